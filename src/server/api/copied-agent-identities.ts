import type { Clock } from '../../common/clock.js';
import { unavailable, type MeshidError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';

/**
 * How long the connection an agent renewed on is remembered. Its own traffic on the SVID it renewed from is what was
 * under way on that connection when it moved to the renewed one: unary calls, which end within their 30 s deadline,
 * and its Sync stream, which it moves over at once. Bounds the memory to the renewals of the last few minutes.
 */
const RENEWAL_CONNECTION_MS = 5 * 60_000;

interface Renewal {
  /** The serial of the SVID the renewal was made with (presented on that connection). */
  fromSerial: string;
  /** The connection it was made on: grpc-js's peer string, "address:port". */
  peer: string;
  at: number;
}

/**
 * Only the server sees both hosts of a copied agent identity (its data dir copied with a VM image or restored from a
 * backup): the one cut off is told (notCurrentSvid), but the operator reading the server's log should learn it too,
 * with where that host is, whether the copy was refused a call or had its Sync stream ended (after which it no longer
 * calls: it looks for a new join token). Once an hour per agent, as a copy that keeps retrying would repeat it.
 *
 * Not every refusal of a retired SVID is a copy: the agent's own calls and Sync stream on the connection it renewed
 * on can reach the server after its first call with the renewed SVID has retired the old one (a call sent just before
 * the move, a cancel racing the retirement). That connection, remembered at the renewal, tells them apart: a copy's
 * calls come on connections of its own, from another host.
 */
export class CopiedAgentIdentities {
  private readonly reports: LogThrottle;
  /** By agent ID, oldest first: where and from which SVID each agent last renewed. */
  private readonly renewals = new Map<string, Renewal>();

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.reports = new LogThrottle(clock, 3_600_000);
  }

  /** Agent `agentId` renewed on connection `peer`, presenting the SVID with serial `fromSerial`. */
  renewed(agentId: string, fromSerial: string, peer: string): void {
    const now = this.clock.now();
    this.renewals.delete(agentId);
    this.renewals.set(agentId, { fromSerial, peer, at: now });
    for (const [id, renewal] of this.renewals) {
      if (now - renewal.at < RENEWAL_CONNECTION_MS) break;
      this.renewals.delete(id);
    }
  }

  /**
   * A call, or a Sync stream, on connection `peer` was refused with `err`; logged when it is notCurrentSvid's refusal
   * of a copy. The renewing agent's own late traffic is not logged, and the refusal to send it is returned instead:
   * UNAVAILABLE, not `must re-attest:`, which would have the agent drop the identity it has just renewed (re-attest
   * with a join token, or give up) for a call that merely overtook its move to the renewed SVID; it retries that call
   * on its new channel. `err` otherwise.
   */
  refused(err: MeshidError, peer: string): MeshidError {
    const currentSerial = err.data?.['supersededBy'];
    if (currentSerial === undefined) return err;
    const agentId = String(err.data?.['agentId']);
    const presentedSerial = err.data?.['presentedSerial'];
    const renewal = this.renewals.get(agentId);
    if (renewal !== undefined && renewal.peer === peer && renewal.fromSerial === presentedSerial && this.clock.now() - renewal.at < RENEWAL_CONNECTION_MS) {
      this.log.debug({ agent: agentId, peer }, "the agent's own call on the SVID it renewed from, reaching the server after it moved to the renewed one");
      return unavailable(
        `agent ${agentId} has renewed its SVID since this call's (serial ${String(presentedSerial)}) on this connection; retry with the renewed one`,
      );
    }
    const admitted = this.reports.admit(agentId);
    if (admitted === undefined) return err;
    this.log.warn(
      { agent: agentId, peer, currentSerial, ...admitted },
      `two hosts hold agent ${agentId}'s identity (its data dir copied with a VM image or restored from a backup): the one at ${peer} ` +
        'presents an SVID the other has renewed away from and is refused; it serves its cached SVIDs until they expire. ' +
        'Restart its agent with a new join token (meshid-server token generate); if the host keeping the identity is not the one you meant, ' +
        'ban this agent ID and re-attest both',
    );
    return err;
  }
}
