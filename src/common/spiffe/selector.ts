import { invalidArgument } from '../errors.js';

/**
 * A selector: a property of a workload (or node) established by an attestor, e.g. type "unix", value "uid:1000".
 * Registration entries list selectors; a caller gets an entry's identity when the attestor produced every one of them.
 * The value keeps SPIRE's spelling ("uid:1000", "user:nginx", "sha256:<hex>") so entries written for SPIRE work here.
 */
export interface Selector {
  type: string;
  value: string;
}

/** "unix:uid:1000" for { type: 'unix', value: 'uid:1000' }: the form used on command lines and in logs. */
export function formatSelector(selector: Selector): string {
  return `${selector.type}:${selector.value}`;
}

/**
 * Parses "type:value": the type is everything before the first ':', the value is the rest and may itself contain ':'
 * ("unix:uid:1000" → type "unix", value "uid:1000"). Both must be non-empty; throws MeshidError(invalid_argument).
 */
export function parseSelector(input: string): Selector {
  const colon = input.indexOf(':');
  if (colon === -1) throw invalidArgument(`selector "${input}" must have the form type:value (e.g. unix:uid:1000)`);
  const type = input.slice(0, colon);
  const value = input.slice(colon + 1);
  if (type === '') throw invalidArgument(`selector "${input}" has an empty type (e.g. unix:uid:1000)`);
  if (value === '') throw invalidArgument(`selector "${input}" has an empty value (e.g. unix:uid:1000)`);
  return { type, value };
}
