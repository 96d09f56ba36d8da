import { failedPrecondition, invalidArgument } from '../errors.js';

/**
 * Validity rules shared by every certificate meshid signs. X.509 Times carry whole seconds, so comparisons use the
 * instant that will actually be encoded (milliseconds truncated).
 */

const toEncodedInstant = (ms: number): number => Math.floor(ms / 1000) * 1000;
const iso = (ms: number): string => new Date(ms).toISOString();

/** notBefore and notAfter are finite and at least one encoded second apart. Throws invalid_argument. */
export function checkValidity(notBefore: number, notAfter: number): void {
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) throw invalidArgument('certificate validity times must be finite numbers');
  if (toEncodedInstant(notAfter) <= toEncodedInstant(notBefore)) {
    throw invalidArgument(`notAfter ${iso(notAfter)} must be at least a second after notBefore ${iso(notBefore)}`);
  }
}

/**
 * A certificate never outlives its issuer (SPEC-NOTES §3, §4). meshid refuses rather than truncating silently, so the
 * caller learns its TTL cannot be honoured. Throws failed_precondition.
 */
export function checkWithinIssuer(notAfter: number, issuerNotAfter: number, what: string): void {
  if (toEncodedInstant(notAfter) > issuerNotAfter) {
    throw failedPrecondition(
      `${what} notAfter ${iso(notAfter)} is beyond the issuing CA's notAfter ${iso(issuerNotAfter)}; meshid does not truncate lifetimes`,
    );
  }
}
