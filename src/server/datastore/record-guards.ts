import { invalidArgument } from '../../common/errors.js';

/**
 * The datastore's own guards. Validation proper (SPIFFE ID syntax, TTL limits) is the API layer's; these only stop
 * values that would store nonsense (an empty key, a negative or fractional time) and name the field when they do.
 */

export function requireText(name: string, value: unknown): void {
  if (typeof value !== 'string' || value === '') throw invalidArgument(`${name} must be a non-empty string`);
}

export function requireTime(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`${name} must be a whole number ≥ 0, got ${String(value)}`);
  }
}
