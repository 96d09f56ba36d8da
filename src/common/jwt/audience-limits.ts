import { invalidArgument } from '../errors.js';

/**
 * Bounds on a JWT-SVID's audiences, the same for a workload's request to the agent and the agent's to the server
 * (which must not rely on the agent having checked). The spec sets none; every audience is embedded in the token and
 * part of the agent's cache key, so unbounded values would let one caller mint arbitrarily large tokens and fill the
 * cache. Far above what relying parties use (SPIRE callers send one or two short ones).
 */
export const MAX_AUDIENCES = 64;
export const MAX_AUDIENCE_BYTES = 1024;

/**
 * Refuses (invalid_argument) a JWT-SVID's audiences that break those bounds, or none, or an empty one (a token whose
 * only audience is empty): the one check of the Workload API's request, the agent's to the server and the admin mint.
 */
export function checkAudiences(audience: readonly string[]): void {
  if (audience.length === 0) throw invalidArgument('audience must be specified');
  if (audience.length > MAX_AUDIENCES) throw invalidArgument(`too many audiences: ${audience.length} (at most ${MAX_AUDIENCES})`);
  audience.forEach((a, i) => {
    if (a === '') throw invalidArgument(`audience[${i}] is empty: every audience must be a non-empty string`);
    if (Buffer.byteLength(a, 'utf8') > MAX_AUDIENCE_BYTES) throw invalidArgument(`audience[${i}] is longer than ${MAX_AUDIENCE_BYTES} bytes`);
  });
}
