import fs from 'node:fs';
import { invalidArgument } from './errors.js';

/**
 * Reads a JSON config file that must hold an object; `{ "<section>": { … } }` (the section alone) is accepted too,
 * for room to grow. Every failure names the file and what to fix. Key checking stays with each binary's config.
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
