import fs from 'node:fs';
import { invalidArgument } from './errors.js';

/**
 * Reads a JSON config file that must hold an object; `{ "<section>": { … } }` (the section alone) is accepted too,
 * for room to grow. Every failure names the file and what to fix. Which keys a file may hold is each binary's
 * config's to say (checkConfigKeys).
 */
export function readJsonConfigObject(file: string, section: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(parsed)) throw invalidArgument(`config file ${file} must hold a JSON object`);
  const inner = parsed[section];
  if (inner === undefined || Object.keys(parsed).length !== 1) return parsed;
  if (!isObject(inner)) throw invalidArgument(`config file ${file}: "${section}" must be an object`);
  return inner;
}

/** The JSON types a config key may hold: one, or several as "string|number" (durations: "90s" or seconds). */
export type ConfigKeyType = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'string|number';

/** Refuses unknown keys and values of the wrong JSON type, naming `where` (the file, and the section). */
export function checkConfigKeys(obj: Record<string, unknown>, known: Readonly<Record<string, ConfigKeyType>>, where: string): void {
  for (const [key, value] of Object.entries(obj)) {
    const type = known[key];
    if (type === undefined) throw invalidArgument(`${where}: unknown key "${key}" (known: ${Object.keys(known).join(', ')})`);
    const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
    if (!type.split('|').includes(actual)) {
      const expected = type === 'string|number' ? 'a string or a number' : `${type === 'array' || type === 'object' ? 'an' : 'a'} ${type}`;
      throw invalidArgument(`${where}: "${key}" must be ${expected}, got ${actual}`);
    }
  }
}
