import { createHash } from 'node:crypto';

/**
 * What the logs say instead of a join token, so an operator can follow one token from `token generate` to the agent
 * that spent it (or the refusal): the first 12 hex digits of its SHA-256. 48 bits of a hash of a 160-bit random
 * token tell an attacker nothing usable, and match by chance only between tokens nobody confuses.
 */
export function joinTokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 12);
}
