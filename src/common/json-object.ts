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
