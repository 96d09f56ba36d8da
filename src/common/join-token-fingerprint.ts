import { createHash } from 'node:crypto';

/**
 * What is kept of a join token instead of the token: its SHA-256, in hex. The server's datastore stores it, so a copy
 * of the database does not let anyone attest; the agent keeps it with its identity, to tell a token it already spent
 * from a new one given at a restart.
 */
export function joinTokenSha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * What the logs say instead of a join token, so an operator can follow one token from `token generate` to the agent
 * that spent it (or the refusal): the first 12 hex digits of its SHA-256. 48 bits of a hash of a 160-bit random
 * token tell an attacker nothing usable, and match by chance only between tokens nobody confuses.
 */
export function joinTokenFingerprint(token: string): string {
  return joinTokenSha256(token).slice(0, 12);
}
