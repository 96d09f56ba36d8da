import { isMeshidError } from '../../common/errors.js';

/**
 * How the server tells an agent that its identity is no longer accepted: PERMISSION_DENIED whose message starts with
 * one of these prefixes (the server's src/server/api/agent-auth.ts; a unit test keeps the two in step).
 */
export const REATTEST_PREFIX = 'must re-attest: ';
export const BANNED_PREFIX = 'banned: ';

/** `reattest`: evicted, or the SVID is not the current one; `banned`: an operator banned this agent. */
export type Rejection = 'reattest' | 'banned';

/** Whether an error from the server is one of the two rejections (a MeshidError as fromServiceError makes it). */
export function rejectionOf(err: unknown): Rejection | undefined {
  if (!isMeshidError(err, 'permission_denied')) return undefined;
  if (err.message.startsWith(REATTEST_PREFIX)) return 'reattest';
  if (err.message.startsWith(BANNED_PREFIX)) return 'banned';
  return undefined;
}
