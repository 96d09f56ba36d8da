import { formatDuration } from '../../common/duration.js';
import { failedPrecondition, type MeshidError } from '../../common/errors.js';
import type { AttestedAgent } from '../datastore/datastore.js';

/** How many agents the refusal names; the count covers the rest. */
const NAMED_AGENTS = 5;

/** Why an agent would lose the server if the root were revoked now. */
export type CutOffReason = 'still on this root' | 'signer not recorded: not renewed since the upgrade' | 'renewed SVID not used yet';

export interface CutOffAgent {
  spiffeId: string;
  reason: CutOffReason;
}

/**
 * The agents that revoking a root now would cut off. The server checks agents' client certificates against the
 * bundle, so an agent whose SVID chains to a root that has left it can no longer renew, sync or re-sign: it needs a
 * new join token. Live agents move off a tainted root by themselves within seconds (the taint reaches them over
 * Sync and they renew), so an agent still listed here is offline, cut off from the server already, or one renewal
 * short. Counted: agents neither banned nor expired whose current SVID was signed by an intermediate under the root
 * (`intermediatesUnder`), or by one not recorded (agents that have not renewed since the server began recording
 * it), and agents that have not yet used the SVID they renewed to: it may never have reached them, and until they
 * use it the server cannot tell. Using it also shows the agent stored it, with the bundle it was checked against
 * (agents persist a renewed SVID before using it), so such an agent also still trusts the server once the server's
 * own SVID moves to the new root.
 */
export function agentsCutOffByRevoking(agents: readonly AttestedAgent[], intermediatesUnder: ReadonlySet<string>, now: number): CutOffAgent[] {
  const cutOff: CutOffAgent[] = [];
  for (const a of agents) {
    if (a.banned || a.certNotAfter <= now) continue;
    if (a.certIssuerId === undefined) cutOff.push({ spiffeId: a.spiffeId, reason: 'signer not recorded: not renewed since the upgrade' });
    else if (intermediatesUnder.has(a.certIssuerId)) cutOff.push({ spiffeId: a.spiffeId, reason: 'still on this root' });
    else if (a.previousCertSerial !== undefined) cutOff.push({ spiffeId: a.spiffeId, reason: 'renewed SVID not used yet' });
  }
  return cutOff;
}

/** The refusal of `ca revoke` while `cutOff` is not empty: who, why, and the ways on. */
/** `rootIds`: one root's ID, or several revoked together, comma-separated. */
export function revokeWouldCutOff(rootIds: readonly string[], cutOff: readonly CutOffAgent[]): MeshidError {
  const named = cutOff.slice(0, NAMED_AGENTS).map((a) => `${a.spiffeId} (${a.reason})`);
  const more = cutOff.length > NAMED_AGENTS ? ` and ${cutOff.length - NAMED_AGENTS} more` : '';
  const roots = rootIds.length === 1 ? `root ${rootIds[0]}` : `roots ${rootIds.join(', ')}`;
  const them = rootIds.length === 1 ? 'it' : 'one of them';
  return failedPrecondition(
    `revoking ${roots} now would cut off ${cutOff.length} agent(s) whose SVID still chains to ${them} or is not known ` +
      `to have moved off ${rootIds.length === 1 ? 'it' : 'them'}: ${named.join(', ')}${more}. Connected agents move off a tainted root within seconds; ` +
      'the others are offline or cannot reach the server (see meshid-server agent show). Wait for them, evict agents ' +
      'that are gone for good (meshid-server agent evict), or revoke anyway with --force: the agents cut off then need ' +
      'a new join token',
  );
}

/**
 * The refusal of `ca revoke` while federation partners may not have this server's new root yet, or undefined. They
 * authenticate its https_spiffe bundle endpoint with the bundle they last fetched from it (Federation §5.2.2.4), and
 * the revoke moves the server's SVID, which the endpoint presents, onto the active root at once: a partner that has
 * not polled since that root was published cannot authenticate the endpoint again until its operator re-seeds this
 * trust domain's bundle by hand. Partners poll at least once per refresh hint, so one hint after the root was
 * published (its journal record's creation: a new root is published at once) every partner polling as asked has it.
 * `refreshHintMs` is undefined when no partner authenticates the endpoint by this server's SVID (no endpoint, or
 * one serving a web PKI certificate), and then nothing is refused.
 */
export function revokeBeforePartnersPolled(
  rootIds: readonly string[], activeRoot: { id: string; createdAt: number } | undefined, refreshHintMs: number | undefined, now: number,
): MeshidError | undefined {
  if (refreshHintMs === undefined || activeRoot === undefined) return undefined;
  const safeAt = activeRoot.createdAt + refreshHintMs;
  if (now >= safeAt) return undefined;
  const roots = rootIds.length === 1 ? `root ${rootIds[0]}` : `roots ${rootIds.join(', ')}`;
  return failedPrecondition(
    `revoking ${roots} now would move the bundle endpoint's SVID onto root ${activeRoot.id}, published ` +
      `${formatDuration(Math.max(0, now - activeRoot.createdAt))} ago, less than one refresh hint (${formatDuration(refreshHintMs)}): ` +
      'federation partners that have not polled since could not authenticate the endpoint any more, and their operators ' +
      `would have to seed this trust domain's bundle again by hand. Wait until ${new Date(safeAt).toISOString()}, or revoke ` +
      'anyway with --force',
  );
}
