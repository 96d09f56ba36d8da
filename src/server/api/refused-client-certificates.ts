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
 * An agent SVID this server signed that TLS refused, expired by the server's clock or no longer chaining to the bundle
 * (its root revoked): what its refusal names.
 */
export interface RefusedAgentSvid {
  readonly agentId: string;
  readonly notAfter: number;
  /** Valid, but its root left the bundle: the agent is cut off and must attest again (README, `ca revoke`). */
  readonly unanchored: boolean;
}

export interface RefusedClientCertificatesDeps {
  /** `spiffe://<trust domain>/meshid/agent/`. */
  agentIdPrefix: string;
  anchor: Pick<AgentSvidAnchor, 'signedByServer' | 'chainsToBundle'>;
  clock: Clock;
}

/**
 * The agent SVIDs the agent API's TLS check refused as expired, or as under a revoked root, by connection, so the call gate can say why a call
 * on such a connection is not authenticated. The agent API requests client certificates without requiring them
 * (Attest comes before an agent has one), so a refused certificate does not fail the handshake: grpc-js then hands
 * the calls no certificate at all, and an agent presenting an SVID the server sees as expired (its host clock behind
 * the server's: by its own clock the SVID is young, so it neither renews nor re-attests) heard only "this call needs
 * the agent SVID", and retried for ever. Nothing here authenticates anything: it only words the refusal.
 *
 * Anyone who reaches the port can present a certificate, so it is judged once, when the connection is admitted, and
 * only the agent ID and notAfter of one the server signed are kept: checked on every call instead, a forged one
 * naming an agent and the server's CA would cost a signature check per call (the calls of an unauthenticated
 * connection are otherwise refused for nothing), and its DER would be held for the connection's life. A certificate
 * not yet expired at the handshake (TLS refused it for something else) is answered as none: such a connection lives
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
    const now = this.deps.clock.now();
    if (agentId === undefined || !this.deps.anchor.signedByServer(cert, now)) return undefined;
    if (cert.notAfter <= now) return { agentId, notAfter: cert.notAfter, unanchored: false };
    // An agent that was down while its root was revoked (--force) comes back with an SVID the TLS trust store no
    // longer holds the root of: told "needs the agent SVID" it took the refusal for a passing one and retried for
    // ever, never using the join token it was given. Both checks are memoized per intermediate (AgentSvidAnchor).
    if (!this.deps.anchor.chainsToBundle(cert, now)) return { agentId, notAfter: cert.notAfter, unanchored: true };
    return undefined;
  }
}

function keyOf(ends: ConnectionEnds): string {
  return `${ends.remoteAddress}:${ends.remotePort} ${ends.localAddress}:${ends.localPort}`;
}
