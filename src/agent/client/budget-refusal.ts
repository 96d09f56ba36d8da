import { isMeshidError } from '../../common/errors.js';

/** The end of the server's budget refusals (src/server/api/node-service.ts): "…; retry in 3 s". */
const RETRY_HINT = /; retry in (\d+) s$/;

/**
 * How long the server asked this agent to wait when it refused a call over one of its budgets (signing, Sync opens,
 * renewals): RESOURCE_EXHAUSTED with its retry pushback (grpc-status.ts), or, from a server older than that, with a
 * message ending in a retry hint. Such a refusal is over in seconds, where an outage (UNAVAILABLE) has no known end.
 * Undefined for anything else, including a full datastore disk (RESOURCE_EXHAUSTED with neither) and an older
 * server's signing refusals, which were UNAVAILABLE and are still taken as an outage.
 */
export function budgetRefusalWaitMs(err: unknown): number | undefined {
  if (!isMeshidError(err, 'resource_exhausted')) return undefined;
  if (err.retryAfterMs !== undefined) return err.retryAfterMs;
  const hint = RETRY_HINT.exec(err.message);
  return hint === null ? undefined : Number(hint[1]) * 1000;
}
