import type { TLSSocket } from 'node:tls';
import type { Clock } from '../../common/clock.js';
import { parseCertificateLazily, type ParsedCertificate } from '../../common/x509/certificate.js';
import { agentSvidId } from './agent-auth.js';
import type { AgentSvidAnchor } from './agent-svid-anchor.js';

/** A connection's two ends as grpc-js reports them to a call (ServerInterceptingCall.getConnectionInfo). */
export interface ConnectionEnds {
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}

/**
 * An agent SVID TLS refused that the agent cannot outwait: expired by the server's clock, no longer chaining to the
 * bundle (its root revoked), or signed by no CA this server holds (its data dir replaced, or restored from before
 * that CA): what its refusal names.
 */
export interface RefusedAgentSvid {
  readonly agentId: string;
  readonly notAfter: number;
  /**
   * unanchored: valid, but its root left the bundle: the agent is cut off and must attest again (README, `ca revoke`).
   * not-signed-by-server: an agent ID of this trust domain under a CA the server does not hold.
   */
  readonly reason: 'expired' | 'unanchored' | 'not-signed-by-server';
}

export interface RefusedClientCertificatesDeps {
  /** `spiffe://<trust domain>/meshid/agent/`. */
  agentIdPrefix: string;
  anchor: Pick<AgentSvidAnchor, 'signedByServer' | 'chainsToBundle'>;
  clock: Clock;
}

/**
 * The agent SVIDs the agent API's TLS check refused as expired, under a revoked root or signed by no CA of this server,
 * by connection, so the call gate can say why a call
 * on such a connection is not authenticated. The agent API requests client certificates without requiring them
 * (Attest comes before an agent has one), so a refused certificate does not fail the handshake: grpc-js then hands
 * the calls no certificate at all, and an agent presenting an SVID the server sees as expired (its host clock behind
 * the server's: by its own clock the SVID is young, so it neither renews nor re-attests) heard only "this call needs
 * the agent SVID", and retried for ever. Nothing here authenticates anything: it only words the refusal.
 *
 * Anyone who reaches the port can present a certificate, so it is judged once, when the connection is admitted, and
 * only the agent ID and notAfter of one naming an agent are kept: checked on every call instead, a forged one
 * naming an agent and the server's CA would cost a signature check per call (the calls of an unauthenticated
 * connection are otherwise refused for nothing), and its DER would be held for the connection's life. One the server
 * signed that TLS refused for something else (not yet valid by a clock stepped back) is answered as none, which the
 * agent retries, and which passes once the clock has caught up: such a connection lives
 * 40 s at most. Held for the connection's life: such connections count as without an agent SVID
 * (agent-api-connections.ts), whose bounds also bound this.
 */
export class RefusedClientCertificates {
  private readonly byEnds = new Map<string, RefusedAgentSvid>();

  constructor(private readonly deps: RefusedClientCertificatesDeps) {}

  /** Notes `socket`'s client certificate when TLS refused an agent SVID of this server as above; forgotten at its close. */
  record(socket: TLSSocket): void {
    if (socket.authorized) return;
    const raw = socket.getPeerCertificate()?.raw;
    const svid = raw === undefined ? undefined : this.expiredAgentSvid(raw);
    if (svid === undefined) return;
    const key = keyOf(socket);
    this.byEnds.set(key, svid);
    socket.once('close', () => {
      if (this.byEnds.get(key) === svid) this.byEnds.delete(key);
    });
  }

  /** The expired agent SVID TLS refused on the connection with these ends, if it refused one. */
  of(ends: ConnectionEnds): RefusedAgentSvid | undefined {
    return this.byEnds.get(keyOf(ends));
  }

  /** Connections noted now (for tests). */
  get size(): number {
    return this.byEnds.size;
  }

  private expiredAgentSvid(raw: Buffer): RefusedAgentSvid | undefined {
    let cert: ParsedCertificate;
    try {
      // meshid's DER walk alone: OpenSSL's object is built only for the signature check, for a certificate that
      // names an agent, has expired and names one of the server's CA keys.
      cert = parseCertificateLazily(raw);
    } catch {
      return undefined;
    }
    const agentId = agentSvidId(cert, this.deps.agentIdPrefix);
    if (agentId === undefined) return undefined;
    const now = this.deps.clock.now();
    const signed = this.deps.anchor.signedByServer(cert, now);
    // Expired, it is the agent's own to notice, unless the server signed it: then the agent may not (its clock behind).
    if (cert.notAfter <= now) return signed ? { agentId, notAfter: cert.notAfter, reason: 'expired' } : undefined;
    // An agent whose server was rebuilt on a new data dir (or restored from before the CA that signed its SVID) and
    // that was given the new bundle: told "needs the agent SVID" it retried for ever, never using a join token given.
    // Anyone may present such a certificate, and learns only that it must attest.
    if (!signed) return { agentId, notAfter: cert.notAfter, reason: 'not-signed-by-server' };
    // An agent that was down while its root was revoked (--force) comes back with an SVID the TLS trust store no
    // longer holds the root of: told "needs the agent SVID" it took the refusal for a passing one and retried for
    // ever, never using the join token it was given. Both checks are memoized per intermediate (AgentSvidAnchor).
    if (!this.deps.anchor.chainsToBundle(cert, now)) return { agentId, notAfter: cert.notAfter, reason: 'unanchored' };
    return undefined;
  }
}

function keyOf(ends: ConnectionEnds): string {
  return `${ends.remoteAddress}:${ends.remotePort} ${ends.localAddress}:${ends.localPort}`;
}
