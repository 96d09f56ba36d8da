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

/**
 * What a `must re-attest:` refusal of an expired agent SVID says (the server's expiredSvidRefusal): the SVID's
 * notAfter, and the server's clock reading when the server names it (servers before it named only the notAfter), or
 * undefined for any other error. A refusal of an SVID this host's clock still takes for valid means the two clocks
 * disagree (ServerConnection), not that the agent let its SVID run out.
 */
export function expiredSvidRefusal(err: unknown): { notAfter: number; serverTime: number | undefined } | undefined {
  if (!isMeshidError(err, 'permission_denied') || !err.message.startsWith(REATTEST_PREFIX)) return undefined;
  const m = EXPIRED.exec(err.message);
  if (m === null) return undefined;
  const notAfter = Date.parse(m[1]!);
  const serverTime = m[2] === undefined ? undefined : Date.parse(m[2]);
  if (Number.isNaN(notAfter)) return undefined;
  return { notAfter, serverTime: serverTime === undefined || Number.isNaN(serverTime) ? undefined : serverTime };
}

const EXPIRED = /^must re-attest: agent \S+'s SVID expired at (\S+?)(?: by meshid-server's clock, which reads (\S+?))?;/;
