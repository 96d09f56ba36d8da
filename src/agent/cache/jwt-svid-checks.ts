import { isMeshidError, MeshidError, unavailable } from '../../common/errors.js';
import { parseJwtSvid } from '../../common/jwt/jwt-svid.js';
import { budgetRefusalWaitMs } from '../client/budget-refusal.js';
import type { AgentEntry } from './agent-entry.js';
import type { JwtSigner } from './jwt-svid-cache.js';

/**
 * What the identity cache (identity-cache.ts) accepts from the server's JWT-SVID signing, and what it tells a workload
 * when that signing fails.
 */

/**
 * What a workload gets when its JWT-SVID cannot be signed. The request's own mistakes stay INVALID_ARGUMENT; anything
 * else (server unreachable, or refusing the agent itself) is the agent's trouble, UNAVAILABLE, not a verdict on the
 * workload: PERMISSION_DENIED would tell it that it has no identity. A refusal of the server's signing budget that
 * was not waited out (too long, or past the call's deadline) is told in the agent's words, with when to come back as
 * the agent's own retry pushback: RESOURCE_EXHAUSTED and the server's wording are about the agent's budget with the
 * server, not anything the workload asked too much of.
 */
export function jwtSvidFailure(entry: AgentEntry, reason: unknown): MeshidError {
  if (isMeshidError(reason, 'invalid_argument') || isMeshidError(reason, 'unavailable')) return reason;
  const budgetWait = budgetRefusalWaitMs(reason);
  if (budgetWait !== undefined) {
    const seconds = Math.max(1, Math.ceil(budgetWait / 1000));
    return new MeshidError('unavailable', `cannot get a JWT-SVID for ${entry.spiffeId}: meshid-server is refusing to sign for now; retry in ${seconds} s`, {
      cause: reason,
      retryAfterMs: Math.ceil(budgetWait),
    });
  }
  const detail = reason instanceof Error ? reason.message : String(reason);
  return unavailable(`cannot get a JWT-SVID for ${entry.spiffeId} from the server: ${detail}`, reason);
}

/**
 * `sign`, refusing a token this agent could not stand behind: one whose `sub` is not the entry's SPIFFE ID (this
 * agent's view lags the server's), or signed with a key the trust bundle it serves does not hold. Refused as it
 * arrives, it is neither cached nor handed out, and cached tokens cost no check per call.
 */
export function checkedJwtSigner(
  sign: JwtSigner,
  view: { spiffeIdOf(entryId: string): string | undefined; holdsJwtKey(kid: string | undefined): boolean },
): JwtSigner {
  return async (entryId, audience) => {
    const jwt = await sign(entryId, audience);
    const expected = view.spiffeIdOf(entryId);
    const sub = tokenSubject(jwt.token);
    // An entry deleted while its token was signed has no ID to compare with: its call was discarded (dropEntry: the
    // token is not cached) and IdentityCache.fetchJwtSvids, seeing the entry gone, starts over without it.
    if (expected !== undefined && sub !== expected) {
      throw unavailable(
        `the server signed a JWT-SVID for ${sub ?? 'another identity'}, not ${expected}: this agent has not yet heard of a change to entry ${entryId}; retry`,
      );
    }
    // Valid at return time (SPEC-NOTES §8) means validatable with the bundle this agent serves: a key the server
    // made at once (a taint with no prepared successor) may sign before its bundle update has arrived here.
    const kid = tokenKeyId(jwt.token);
    if (!view.holdsJwtKey(kid)) {
      throw unavailable(`the server signed a JWT-SVID with key ${kid ?? '(no kid)'}, which this agent's trust bundle does not hold yet; retry`);
    }
    return jwt;
  };
}

/** The token's `kid`, or undefined when it cannot be read (the server's tokens always carry one). */
export const tokenKeyId = (token: string): string | undefined => tokenText(token, 'header', 'kid');

/** The token's `sub`, or undefined when it cannot be read (the server's tokens always carry one). */
const tokenSubject = (token: string): string | undefined => tokenText(token, 'claims', 'sub');

function tokenText(token: string, part: 'header' | 'claims', name: string): string | undefined {
  try {
    const value = parseJwtSvid(token)[part][name];
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}
