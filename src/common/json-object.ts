import { invalidArgument } from './errors.js';

/** A JSON object (not null, not an array), as every meshid document and JWK must be. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Parses `text` as a JSON object. Throws MeshidError(invalid_argument) "<label> is not valid JSON" or
 * "<label> is not a JSON object", never echoing the content (it may hold keys).
 */
export function parseJsonObject(text: string, label: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalidArgument(`${label} is not valid JSON`);
  }
  if (!isJsonObject(value)) throw invalidArgument(`${label} is not a JSON object`);
  return value;
}

/**
 * What is wrong with `text`, which JSON.parse refused with `err`, without quoting any of it: V8's message quotes the
 * text around the fault ("Unexpected token 'a', ..."n_token": a166f7a4"..."), and in a config file that text can be a
 * join token. Its own words are kept where they quote nothing, with the line and column of the fault.
 */
export function jsonSyntaxProblem(err: unknown, text: string): string {
  const message = err instanceof Error ? err.message : '';
  const at = /^(.*?) (?:in JSON )?at position (\d+)/.exec(message);
  if (at !== null && !at[1]!.includes('"')) {
    const before = text.slice(0, Number(at[2]));
    const line = before.split('\n').length;
    return `${at[1]} at line ${line}, column ${before.length - before.lastIndexOf('\n')}`;
  }
  if (/end of JSON input/.test(message)) return 'it ends before the JSON does';
  return 'it holds a value JSON does not allow there (a string without quotes, a trailing comma, a comment?)';
}
