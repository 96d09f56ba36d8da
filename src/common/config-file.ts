import fs from 'node:fs';
import { invalidArgument } from './errors.js';
import { jsonSyntaxProblem } from './json-object.js';
import { closestMatch } from './cli/suggest.js';
import { readProblem, withoutByteOrderMark } from './cli/input.js';
import { refuseDuplicateKeys } from './json-duplicate-key.js';

/** What `run -expandEnv` (spire-server's and spire-agent's) is told: neither daemon expands variables in its file. */
export const EXPAND_ENV_NOT_SUPPORTED = 'config files are read as written; put the values in the file or pass them as flags';

/**
 * Reads a JSON config file that must hold an object; `{ "<section>": { … } }` (the section alone) is accepted too,
 * for room to grow. Every failure names the file and what to fix. A key given twice in one object is refused, at any
 * depth: JSON.parse would keep the last value without a word. Which keys a file may hold is each binary's config's to
 * say (checkConfigKeys).
 */
export function readJsonConfigObject(file: string, section: string): Record<string, unknown> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw invalidArgument(`cannot read config file ${file}: ${readProblem(err)}`);
  }
  const text = withoutByteOrderMark(utf8Text(bytes, file));
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // A SPIRE .conf brought along: where the JSON went wrong says nothing useful about a file in another language.
    if (looksLikeHcl(text)) {
      throw invalidArgument(
        `config file ${file} is HCL, as spire-${section}'s config files are: meshid-${section} reads JSON only; write the settings as a JSON ` +
          `object with snake_case keys, e.g. ${section === 'agent' ? '{"server_address": "server:8081"}' : '{"trust_domain": "example.org"}'} ` +
          `(meshid-${section} validate --config checks it)`,
      );
    }
    const problem = jsonSyntaxProblem(err, text);
    const at = / at line \d+/.test(problem) ? undefined : faultLocation(text);
    throw invalidArgument(`config file ${file} is not valid JSON: ${problem}${at === undefined ? '' : ` (line ${at.line}, column ${at.column})`}`);
  }
  refuseDuplicateKeys(text, `config file ${file}`);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(parsed)) throw invalidArgument(`config file ${file} must hold a JSON object`);
  const inner = parsed[section];
  if (inner === undefined) return parsed;
  if (!isObject(inner)) throw invalidArgument(`config file ${file}: "${section}" must be an object`);
  // SPIRE's layout (its JSON form): the section beside top-level blocks such as health_checks and plugins. They are
  // read as keys of the section, so health_checks works where SPIRE puts it and the others are refused by name.
  const merged: Record<string, unknown> = { ...inner };
  for (const [key, value] of Object.entries(parsed)) {
    if (key === section) continue;
    if (Object.hasOwn(inner, key)) throw invalidArgument(`config file ${file}: "${key}" is given both at the top level and in "${section}": keep one`);
    merged[key] = value;
  }
  return merged;
}

/**
 * The file's text, which must be UTF-8 (RFC 8259 §8.1). Read leniently, a byte of another encoding became U+FFFD
 * unnoticed: a data_dir of "/srv/café" in Latin-1 named another directory, and a UTF-16 file (as some Windows editors
 * save) was reported as JSON syntax.
 */
function utf8Text(bytes: Buffer, file: string): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw invalidArgument(`config file ${file} is UTF-16: save it as UTF-8`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const lenient = bytes.toString('utf8');
    const line = lenient.slice(0, lenient.indexOf('\uFFFD')).split('\n').length;
    throw invalidArgument(`config file ${file}, line ${line}: not UTF-8 (a byte of another encoding, such as Latin-1): save the file as UTF-8`);
  }
}

/**
 * Where JSON.parse's fault is when its message gives no position (V8 says "Unexpected token" for an unquoted value, a
 * YAML line, a comment): the shortest prefix that fails for a reason other than ending early ends at the fault. JSON
 * is read left to right, so every longer prefix fails there too, and a binary search finds it.
 */
function faultLocation(text: string): { line: number; column: number } | undefined {
  const failsWithin = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return false;
    } catch (err) {
      const message = (err as Error).message;
      if (/end of JSON input/.test(message)) return false;
      const at = / at position (\d+)/.exec(message);
      return at === null || Number(at[1]) < length;
    }
  };
  if (!failsWithin(text.length)) return undefined;
  let low = 1;
  let high = text.length;
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    if (failsWithin(mid)) high = mid;
    else low = mid + 1;
  }
  const before = text.slice(0, low - 1);
  return { line: before.split('\n').length, column: before.length - before.lastIndexOf('\n') };
}

/**
 * Whether text JSON.parse refused reads as HCL: after comment lines, an identifier followed by `=`, `{` or a quoted
 * label (`server {`, `trust_domain = "example.org"`, `DataStore "sql" {`), where JSON has `{` or `[`.
 */
function looksLikeHcl(text: string): boolean {
  const first = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !/^(#|\/\/|\/\*|\*)/.test(l));
  return first !== undefined && /^[A-Za-z_][\w-]*\s*(=|\{|")/.test(first);
}

/** The JSON types a config key may hold: one, or several as "string|number" (durations: "90s" or seconds). */
export type ConfigKeyType = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'string|number';

/**
 * Refuses unknown keys and values of the wrong JSON type, naming `where` (the file, and the section). A key of
 * SPIRE's config that meshid has no counterpart for (`spireKeys`: key → what to do instead) is refused saying so.
 */
export function checkConfigKeys(
  obj: Record<string, unknown>,
  known: Readonly<Record<string, ConfigKeyType>>,
  where: string,
  spireKeys: Readonly<Record<string, string>> = {},
): void {
  for (const [key, value] of Object.entries(obj)) {
    // Own keys only: known['constructor'] is Object's, and would fail below as a TypeError instead of an unknown key.
    const type = Object.hasOwn(known, key) ? known[key] : undefined;
    if (type === undefined && Object.hasOwn(spireKeys, key)) {
      throw invalidArgument(`${where}: "${key}" is a SPIRE setting meshid has no counterpart for: ${spireKeys[key]}`);
    }
    if (type === undefined) {
      const close = closestConfigKey(key, Object.keys(known), obj);
      throw invalidArgument(`${where}: unknown key "${key}" (${close !== undefined ? `did you mean "${close}"?` : `known: ${Object.keys(known).join(', ')}`})`);
    }
    const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
    if (!type.split('|').includes(actual)) {
      const expected = type === 'string|number' ? 'a string or a number' : `${type === 'array' || type === 'object' ? 'an' : 'a'} ${type}`;
      throw invalidArgument(`${where}: "${key}" must be ${expected}, got ${actual}`);
    }
  }
}

/**
 * Refuses a key set to "" (or only spaces): read as a path it would be the working directory (a data_dir of "" put the
 * state beside whatever was there), and elsewhere it reads as "not set" to one check and as a value to another. Flags
 * refuse empty values the same way. Keys in `setByFlags` are left alone: the flag wins over the file, so the "" never
 * reaches the config, and a file that leaves a value for the command line to give (`"join_token": ""` beside
 * --join-token) started before this check and still does.
 */
export function refuseEmptyStrings(obj: Readonly<Record<string, unknown>>, where: string, setByFlags: ReadonlySet<string> = new Set()): void {
  for (const [key, value] of Object.entries(obj)) {
    if (typeof value === 'string' && value.trim() === '' && !setByFlags.has(key)) {
      throw invalidArgument(`${where}: "${key}" is empty: give it a value, or leave the key out for its default`);
    }
  }
}

/**
 * The key an operator most likely meant: the snake_case spelling of a flag or camelCase name (`trustDomain`,
 * `bind-address`), a key it is the start of (`trust_bundle` for the agent's `trust_bundle_path`, which its
 * `--trust-bundle` flag sets), or a near typo. Never a key `present` already holds: renamed as told, the key would be
 * in the object twice, and JSON.parse keeps the last one without a word.
 */
export function closestConfigKey(key: string, allKnown: readonly string[], present: Readonly<Record<string, unknown>> = {}): string | undefined {
  const known = allKnown.filter((k) => !Object.hasOwn(present, k));
  const snake = key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toLowerCase();
  if (known.includes(snake)) return snake;
  const longer = known.filter((k) => k.startsWith(`${snake}_`));
  if (longer.length === 1) return longer[0];
  return closestMatch(snake, known);
}
