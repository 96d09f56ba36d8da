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

/**
 * The serial (hex) of the agent SVID a `must re-attest:` refusal says another holder of the identity has renewed away
 * from (the server's notCurrentSvid), or undefined for any other error. The refusal is about the SVID the call was
 * made with: when that is not the one the agent holds now, the call merely overtook the agent's move to its renewed
 * SVID (NodeClient.translate), and it is no reason to give the identity up.
 */
export function supersededSerial(err: unknown): string | undefined {
  if (!isMeshidError(err, 'permission_denied') || !err.message.startsWith(REATTEST_PREFIX)) return undefined;
  return SUPERSEDED.exec(err.message)?.[1];
}

const SUPERSEDED = /is no longer agent \S+'s SVID \(serial ([0-9a-f]+)\): another holder of this identity renewed it since/;
