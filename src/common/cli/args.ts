import { invalidArgument } from '../errors.js';
import { formatDuration, parseDuration } from '../duration.js';
import { closestMatch } from './suggest.js';
import { looksLikeCredential, quotedUnlessCredential } from './credential-like.js';

/**
 * How a flag takes its value:
 * - string: one value (`--spiffe-id X` or `--spiffe-id=X`); giving it twice is an error;
 * - strings: repeatable, values accumulate in order (`--selector a:1 --selector b:2`);
 * - bool: present = true; `--admin=false` / `--admin=true` set it explicitly; never consumes the next word;
 * - duration: one value, seconds ("3600") or units ("90s", "24h", "1h30m"), parsed with parseDuration.
 */
export type FlagType = 'string' | 'strings' | 'bool' | 'duration';

/** One flag of a command, declared once and used for parsing, validation and --help. */
export interface FlagSpec {
  /** Canonical GNU long name without dashes: "spiffe-id". */
  readonly name: string;
  /** Other spellings without dashes, e.g. SPIRE's "spiffeID". Accepted with one or two dashes, case-sensitive. */
  readonly aliases?: readonly string[];
  readonly type: FlagType;
  readonly description: string;
  /** Placeholder in --help: "ID" in `--spiffe-id ID`. */
  readonly valueName?: string;
  /** If set, the only values accepted (checked at parse time). */
  readonly choices?: readonly string[];
  /**
   * choices match in any case (`DEBUG` for debug, as SPIRE's log levels do); the value reads as the choice's own
   * spelling.
   */
  readonly choicesAnyCase?: boolean;
  /**
   * string/strings: an empty value (`--hint ""`) is accepted and means none, so an update can clear the field;
   * for strings it is the empty list, and only alone (`--dns ""`). Otherwise an empty value is an error.
   */
  readonly emptyClears?: boolean;
  /** duration: 0 is accepted (where 0 means "the server default"); otherwise a duration must be positive. */
  readonly zeroAllowed?: boolean;
  /** duration: the longest accepted, in milliseconds (default MAX_DURATION_FLAG_MS). */
  readonly maxMs?: number;
}

/**
 * The longest any duration flag takes, as the longest duration setting (100 years): past about 99 million days a
 * deadline is no JavaScript Date at all, and a command given one failed at once with an unrelated error.
 */
export const MAX_DURATION_FLAG_MS = 36_500 * 86_400_000;

/**
 * The longest a `--timeout` waits: a day, more than any command needs to reach a local daemon. Node's timers cannot
 * count past 24.8 days (a longer one fires at once), so this also keeps `api watch --timeout` from giving up at once.
 */
export const MAX_TIMEOUT_FLAG_MS = 86_400_000;

/** Entry and SVID TTLs travel as int32 seconds. */
const MAX_SECONDS = 2_147_483_647;

/**
 * The longest a flag read with `seconds()` takes (the admin API's TTLs, int32 seconds: about 68 years), so that one
 * past it is refused at parse time as any other duration flag's maximum is, naming the flag as typed and the true limit.
 */
export const MAX_SECONDS_FLAG_MS = MAX_SECONDS * 1000;

type FlagValue = string | string[] | boolean | number;

const HELP_WORDS = new Set(['h', 'help']);
const TRUE_WORDS = new Set(['true', '1', 't', 'yes']);
const FALSE_WORDS = new Set(['false', '0', 'f', 'no']);

/** The result of parsing: typed accessors by canonical flag name, positionals, and whether help was asked for. */
export class ParsedArgs {
  constructor(
    private readonly specs: ReadonlyMap<string, FlagSpec>,
    private readonly values: ReadonlyMap<string, FlagValue>,
    /** Words that are not flags, in order. */
    readonly positionals: readonly string[],
    /** True when -h, -help or --help was given. */
    readonly help: boolean,
  ) {}

  /** Canonical names of the flags given on the command line, in the order first seen. */
  get given(): string[] {
    return [...this.values.keys()];
  }

  has(name: string): boolean {
    this.spec(name);
    return this.values.has(name);
  }

  string(name: string): string | undefined {
    return this.value(name, 'string') as string | undefined;
  }

  /** The value of a string flag the command cannot do without; a missing one is an InvalidArgument naming it. */
  requiredString(name: string, why = ''): string {
    const v = this.string(name);
    if (v === undefined) throw invalidArgument(`flag --${name} is required${why ? ` ${why}` : ''}`);
    return v;
  }

  strings(name: string): string[] {
    return [...((this.value(name, 'strings') as string[] | undefined) ?? [])];
  }

  bool(name: string): boolean | undefined {
    return this.value(name, 'bool') as boolean | undefined;
  }

  /** A duration flag in milliseconds. */
  durationMs(name: string): number | undefined {
    return this.value(name, 'duration') as number | undefined;
  }

  /** A duration flag as the whole seconds the admin API carries; "1500ms" is refused rather than rounded. */
  seconds(name: string): number | undefined {
    const ms = this.durationMs(name);
    if (ms === undefined) return undefined;
    if (ms % 1000 !== 0) throw invalidArgument(`flag --${name}: ${ms} ms is not a whole number of seconds`);
    if (ms / 1000 > MAX_SECONDS) throw invalidArgument(`flag --${name}: ${ms / 1000} s is too long (at most ${MAX_SECONDS} s)`);
    return ms / 1000;
  }

  private spec(name: string): FlagSpec {
    const spec = this.specs.get(name);
    // A programming error in a command, not an operator error.
    if (spec === undefined) throw new Error(`flag --${name} is not declared for this command`);
    return spec;
  }

  private value(name: string, type: FlagType): FlagValue | undefined {
    const spec = this.spec(name);
    if (spec.type !== type) throw new Error(`flag --${name} is declared as ${spec.type}, read as ${type}`);
    return this.values.get(name);
  }
}

export interface ParseOptions {
  /** How many positional words the command takes; more is an error. Default 0. */
  maxPositionals?: number;
  /**
   * Flags of SPIRE's that meshid deliberately has no counterpart for (spelling without dashes → what to do instead):
   * an operator following SPIRE's docs gets the meshid way, not a "did you mean" for an unrelated flag.
   */
  notSupported?: Readonly<Record<string, string>>;
}

/**
 * Parses argv against declared flags. Accepts `--name value`, `--name=value`, and every alias with one or two dashes
 * (`-spiffeID x`, as spire-server spells them); strings flags accumulate; `--` ends flags. Every mistake is an
 * InvalidArgument that names the flag as typed: unknown flags come with the closest known spelling.
 */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], options: ParseOptions = {}): ParsedArgs {
  const byName = new Map<string, FlagSpec>();
  const lookup = new Map<string, { spec: FlagSpec; spelling: string }>();
  for (const spec of specs) {
    byName.set(spec.name, spec);
    for (const spelling of [spec.name, ...(spec.aliases ?? [])]) {
      if (lookup.has(spelling)) throw new Error(`flag spelling "${spelling}" is declared twice`);
      lookup.set(spelling, { spec, spelling: spelling === spec.name ? `--${spelling}` : `-${spelling}` });
    }
  }
  const values = new Map<string, FlagValue>();
  /** How each flag given was first spelt, as typed and without dashes: a second value may come under an alias. */
  const firstSpelling = new Map<string, { typed: string; key: string }>();
  /** strings flags given as "" (none), which no other value of theirs may join. */
  const emptied = new Set<string>();
  const positionals: string[] = [];
  let help = false;

  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith('-') || word === '-') {
      positionals.push(word);
      continue;
    }
    const body = word.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const key = eq === -1 ? body : body.slice(0, eq);
    const typed = word.slice(0, word.length - body.length) + key;
    const found = lookup.get(key);
    if (found === undefined) {
      if (HELP_WORDS.has(key) && eq === -1) {
        help = true;
        continue;
      }
      const instead = options.notSupported?.[key];
      if (instead !== undefined) throw invalidArgument(`flag ${typed} is not supported by meshid: ${instead}`);
      throw unknownFlag(typed, key, lookup);
    }
    const { spec } = found;
    const first = firstSpelling.get(spec.name);
    if (first === undefined) firstSpelling.set(spec.name, { typed, key });
    const givenTwice = (): Error => givenMoreThanOnce(spec, first ?? { typed, key }, { typed, key });
    let raw: string | undefined = eq === -1 ? undefined : body.slice(eq + 1);
    if (spec.type === 'bool') {
      if (values.has(spec.name)) throw givenTwice();
      values.set(spec.name, parseBool(typed, raw));
      continue;
    }
    if (raw === undefined) {
      const next = argv[i + 1];
      if (next === undefined) throw invalidArgument(`flag ${typed} needs a value`);
      if (next.startsWith('-') && next !== '-') {
        throw invalidArgument(`flag ${typed} needs a value, got flag "${next}" (write ${typed}=<value> for a value that starts with "-")`);
      }
      raw = next;
      i++;
    }
    if (raw === '' && spec.emptyClears === true && spec.type !== 'duration') {
      if (spec.type === 'strings') {
        // "None" beside values is a contradiction, whichever comes first: refused rather than one of them dropped.
        if (values.has(spec.name)) throw invalidArgument(`flag ${typed} "" (none) cannot be combined with other values of ${typed}`);
        values.set(spec.name, []);
        emptied.add(spec.name);
        continue;
      }
      if (values.has(spec.name)) throw givenTwice();
      values.set(spec.name, '');
      continue;
    }
    if (raw === '') throw invalidArgument(`flag ${typed} has an empty value`);
    if (spec.choices !== undefined) {
      const given = raw;
      const choice = spec.choices.find((c) => c === given || (spec.choicesAnyCase === true && c.toLowerCase() === given.toLowerCase()));
      if (choice === undefined) throw invalidArgument(`flag ${typed} must be one of ${spec.choices.join(', ')}, got ${quotedUnlessCredential(raw)}`);
      raw = choice;
    }
    if (spec.type === 'strings') {
      if (emptied.has(spec.name)) throw invalidArgument(`flag ${typed} "" (none) cannot be combined with other values of ${typed}`);
      values.set(spec.name, [...((values.get(spec.name) as string[] | undefined) ?? []), raw]);
      continue;
    }
    if (values.has(spec.name)) throw givenTwice();
    values.set(spec.name, spec.type !== 'duration' ? raw : spec.zeroAllowed === true && /^0+(?:ms|s|m|h|d)?$/.test(raw) ? 0 : durationValue(typed, raw, spec.maxMs ?? MAX_DURATION_FLAG_MS));
  }

  const max = options.maxPositionals ?? 0;
  if (positionals.length > max && !help) {
    const extra = positionals[max]!;
    throw invalidArgument(`unexpected argument ${quotedUnlessCredential(extra)}${max === 0 ? ': this command takes only flags' : ''}`);
  }
  return new ParsedArgs(byName, values, positionals, help);
}

/**
 * A single-valued flag given a second time. Under two spellings (`-ttl 3600 -x509SVIDTTL 3600`) both are named: each
 * was typed once, and that they are one flag is what the operator needs to hear.
 */
function givenMoreThanOnce(spec: FlagSpec, first: { typed: string; key: string }, again: { typed: string; key: string }): Error {
  if (first.key === again.key) return invalidArgument(`flag ${again.typed} is given more than once`);
  return invalidArgument(`flags ${first.typed} and ${again.typed} are two spellings of one flag (--${spec.name}): give it once`);
}

function parseBool(typed: string, raw: string | undefined): boolean {
  if (raw === undefined) return true;
  const v = raw.toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  throw invalidArgument(`flag ${typed} takes true or false, got ${quotedUnlessCredential(raw)}`);
}

/** A duration flag's value; parseDuration quotes what it refuses, which a token given to the wrong flag must not be. */
function durationValue(typed: string, raw: string, maxMs: number): number {
  if (looksLikeCredential(raw)) throw invalidArgument(`flag ${typed} takes a duration (3600, 90s, 15m, 24h, 7d), got ${quotedUnlessCredential(raw)}`);
  const ms = parseDuration(raw, `flag ${typed}`);
  if (ms > maxMs) throw invalidArgument(`flag ${typed} "${raw}" is too long: at most ${formatDuration(maxMs)}`);
  return ms;
}

/**
 * The suggestion comes in the style typed: `--parentid` is someone writing GNU long flags, so the answer is
 * `--parent-id` even when the nearest spelling is SPIRE's `-parentID`; a single dash keeps the spelling found.
 */
function unknownFlag(typed: string, key: string, lookup: ReadonlyMap<string, { spec: FlagSpec; spelling: string }>): Error {
  const close = closestMatch(key, lookup.keys());
  const found = close === undefined ? undefined : lookup.get(close)!;
  const spelling = found === undefined ? undefined : typed.startsWith('--') ? `--${found.spec.name}` : found.spelling;
  const hint = spelling === undefined ? ' (see --help for the flags this command takes)' : ` (did you mean ${spelling}?)`;
  return invalidArgument(`unknown flag ${typed}${hint}`);
}

/**
 * The --help text of a command: usage line, summary, then each flag with its placeholder, description and aliases.
 */
export function formatHelp(usage: string, summary: string, specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const placeholder = s.type === 'bool' ? '' : ` ${s.valueName ?? (s.choices ? s.choices.join('|') : s.type === 'duration' ? 'DURATION' : 'VALUE')}`;
    const notes = [
      s.type === 'strings' ? 'repeatable' : '',
      s.aliases && s.aliases.length > 0 ? `alias ${s.aliases.map((a) => `-${a}`).join(', ')}` : '',
    ].filter((n) => n !== '');
    return [`--${s.name}${placeholder}`, s.description + (notes.length > 0 ? ` (${notes.join('; ')})` : '')] as const;
  });
  const width = Math.max('--help'.length, ...rows.map(([left]) => left.length));
  const lines = [`Usage: ${usage}`, '', summary];
  lines.push('', 'Flags:');
  for (const [left, right] of rows) lines.push(`  ${left.padEnd(width)}  ${right}`);
  lines.push(`  ${'--help'.padEnd(width)}  Show this help`);
  return lines.join('\n') + '\n';
}
