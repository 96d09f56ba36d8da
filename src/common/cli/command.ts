import { invalidArgument } from '../errors.js';
import { formatHelp, parseArgs, type FlagSpec, type ParsedArgs } from './args.js';
import { reportError, EXIT_FAILURE, type CliIo } from './output.js';
import { closestMatch } from './suggest.js';
import { looksLikeCredential } from './credential-like.js';

/** One leaf command (`entry create`): its flags, its --help text and what it does with parsed flags. */
export interface Command {
  readonly name: string;
  /** One sentence for --help and the group listing. */
  readonly summary: string;
  /** What follows the command path in the usage line; default "[flags]". */
  readonly usage?: string;
  readonly flags: readonly FlagSpec[];
  readonly maxPositionals?: number;
  /** SPIRE flags this command has no counterpart for, with what to do instead (ParseOptions.notSupported). */
  readonly notSupported?: Readonly<Record<string, string>>;
  /** Returns the exit status; throws for failures (printed as one line by runCommand). */
  run(args: ParsedArgs, io: CliIo): Promise<number>;
}

/** The words that ask a command group for its help rather than name a subcommand. */
export const HELP_WORDS = new Set(['-h', '-help', '--help', 'help']);

/**
 * SPIRE's `healthcheck -shallow`, accepted so probes written for SPIRE run unchanged. meshid's check is always the
 * same: the process answers a gRPC health check on its socket.
 */
export const SHALLOW_FLAG: FlagSpec = { name: 'shallow', type: 'bool', description: "Accepted for SPIRE's probes; the check is the same" };

/** SPIRE's `healthcheck -verbose`, accepted for the same reason; it names the socket checked, on stderr (stdout stays the verdict). */
export const VERBOSE_FLAG: FlagSpec = { name: 'verbose', type: 'bool', description: 'Also print which socket is checked (on stderr)' };

/**
 * Parses argv for `cmd` and runs it: --help prints the help and exits 0; a parse error or anything thrown becomes one
 * `Error: …` line on stderr and exit status 1.
 */
export async function runCommand(path: string, cmd: Command, argv: readonly string[], io: CliIo): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseArgs(argv, cmd.flags, { maxPositionals: cmd.maxPositionals ?? 0, ...(cmd.notSupported && { notSupported: cmd.notSupported }) });
  } catch (err) {
    return reportError(io, err);
  }
  if (args.help) {
    io.stdout.write(formatHelp(`${path} ${cmd.usage ?? '[flags]'}`, cmd.summary, cmd.flags));
    return 0;
  }
  try {
    return await cmd.run(args, io);
  } catch (err) {
    return reportError(io, err);
  }
}

/** The help of a command group: its summary and one line per subcommand. */
export function formatGroupHelp(path: string, summary: string, commands: readonly Pick<Command, 'name' | 'summary'>[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = [`Usage: ${path} <command> [flags]`, '', summary, '', 'Commands:'];
  for (const c of commands) lines.push(`  ${c.name.padEnd(width)}  ${c.summary}`);
  lines.push('', `Run "${path} <command> --help" for the flags of a command.`);
  return lines.join('\n') + '\n';
}

/**
 * Dispatches `argv[0]` to one of `commands` (`entry create|show|…`). Without a subcommand the group's help goes to
 * stderr with exit 1; an unknown one is an error that suggests the closest name. `spireInstead` answers the SPIRE
 * group's subcommands that meshid has not, with what to do instead (as runBinary does for whole groups).
 */
export async function runGroup(
  path: string,
  summary: string,
  commands: readonly Command[],
  argv: readonly string[],
  io: CliIo,
  spireInstead: Readonly<Record<string, string>> = {},
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(formatGroupHelp(path, summary, commands));
    return EXIT_FAILURE;
  }
  if (HELP_WORDS.has(name)) {
    io.stdout.write(formatGroupHelp(path, summary, commands));
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (cmd === undefined) return reportError(io, noSuchCommand(path, name, commands.map((c) => c.name), spireInstead));
  return runCommand(`${path} ${name}`, cmd, rest, io);
}

/**
 * The answer to a command `path` does not have: what to run instead when it is a SPIRE command meshid has under
 * another name or not at all (`spireInstead`), else unknownCommand's suggestion.
 */
export function noSuchCommand(path: string, name: string, known: readonly string[], spireInstead: Readonly<Record<string, string>>): Error {
  const instead = Object.hasOwn(spireInstead, name) ? spireInstead[name] : undefined;
  if (instead !== undefined) return invalidArgument(`${path} has no "${name}" command: ${instead}`);
  return unknownCommand(path, name, known);
}

/** `unknown command "meshid-server entry crate" (did you mean "create"?)`. */
export function unknownCommand(path: string, name: string, known: readonly string[]): Error {
  // `meshid-agent api fetch --socket-path X` (the command forgotten, or put last): a flag is no misspelt command.
  if (name.startsWith('-')) {
    // `api validate --svid=<jwt>`: the word is quoted twice below, and stderr ends up in scrollback and CI logs.
    const eq = name.indexOf('=');
    const shown = eq !== -1 && looksLikeCredential(name.slice(eq + 1)) ? `${name.slice(0, eq)}=…` : name;
    return invalidArgument(`${path} needs a command before its flags, got ${shown}: one of ${known.join(', ')} (e.g. ${path} ${known[0]} ${shown} …)`);
  }
  // `token <token>` (revoke forgotten) or `api validate <jwt>` (jwt forgotten): not repeated, as parseArgs does not.
  if (looksLikeCredential(name)) {
    return invalidArgument(`unknown command (a token or JWT-SVID, not repeated here: give it to the flag that takes it, after the command) for ${path}: one of ${known.join(', ')}`);
  }
  const close = name === '' ? undefined : closestMatch(name, known);
  const hint = close === undefined ? ` (known: ${known.join(', ')})` : ` (did you mean "${close}"?)`;
  return invalidArgument(`unknown command "${path} ${name}"${hint}`);
}
