import { isMeshidError } from '../../common/errors.js';

/**
 * How long after the server's signing budget first refused an identity a workload's first request still waits for
 * it: a first Workload API message (svid-issuer.ts) and a FetchJWTSVID without a usable cached token
 * (jwt-svid-cache.ts). A reconnect storm after a CA rotation spends the budget for seconds, and a one-shot fetch then
 * should get every identity of the caller, not those signed before the budget ran out (SPIRE's agent holds a first
 * update until all of them are cached). Below the Workload API's 30 s pending window (DEFAULT_PENDING_TIMEOUT_MS), so
 * a first message that waited in vain still goes out with what there is; a refusal whose retry would come later than
 * this is not waited for at all.
 */
export const BUDGET_REFUSALS_WAITED_FOR_MS = 20_000;

/**
 * The longest wait a budget refusal is taken to ask for. The server's budgets ask for seconds (Sync opens 2 s,
 * renewals 10 s, signing what a batch costs at agent_sign_rate); a longer wait is a server's bug or a rate set far too
 * low, and honoured whole it would hold the agent's Sync stream, renewals and signing for as long as it says (the
 * pushback's ten digits are 115 days), letting its SVIDs run out. Past this the agent asks again, as its own
 * backoff would: one refusal more costs the server little.
 */
export const MAX_BUDGET_REFUSAL_WAIT_MS = 5 * 60_000;

/** The end of the server's budget refusals (budgetSpent, src/common/errors.ts): "…; retry in 3 s". */
const RETRY_HINT = /; retry in (\d+) s$/;

/**
 * How long the server asked this agent to wait when it refused a call over one of its budgets (signing, Sync opens,
 * renewals): RESOURCE_EXHAUSTED with its retry pushback (grpc-status.ts), or, from a server older than that, with a
 * message ending in a retry hint; at most MAX_BUDGET_REFUSAL_WAIT_MS. Such a refusal is over in seconds, where an
 * outage (UNAVAILABLE) has no known end. Undefined for anything else, including a full datastore disk
 * (RESOURCE_EXHAUSTED with neither) and an older server's signing refusals, which were UNAVAILABLE and are still
 * taken as an outage.
 */
export function budgetRefusalWaitMs(err: unknown): number | undefined {
  if (!isMeshidError(err, 'resource_exhausted')) return undefined;
  const hint = RETRY_HINT.exec(err.message);
  const wait = err.retryAfterMs ?? (hint === null ? undefined : Number(hint[1]) * 1000);
  return wait === undefined ? undefined : Math.min(wait, MAX_BUDGET_REFUSAL_WAIT_MS);
}

/**
 * How long the server asked the agent to wait with any refusal that carries retry pushback, at most
 * MAX_BUDGET_REFUSAL_WAIT_MS: the budgets' RESOURCE_EXHAUSTED, and Attest refused UNAVAILABLE because its source
 * address spent its attempts (the server's attest-attempts.ts). An outage has none: undefined.
 */
export function retryPushbackWaitMs(err: unknown): number | undefined {
  if (!isMeshidError(err) || err.retryAfterMs === undefined) return undefined;
  return Math.min(err.retryAfterMs, MAX_BUDGET_REFUSAL_WAIT_MS);
}
