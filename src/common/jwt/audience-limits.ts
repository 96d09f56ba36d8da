/**
 * Bounds on a JWT-SVID's audiences, the same for a workload's request to the agent and the agent's to the server
 * (which must not rely on the agent having checked). The spec sets none; every audience is embedded in the token and
 * part of the agent's cache key, so unbounded values would let one caller mint arbitrarily large tokens and fill the
 * cache. Far above what relying parties use (SPIRE callers send one or two short ones).
 */
export const MAX_AUDIENCES = 64;
export const MAX_AUDIENCE_BYTES = 1024;
