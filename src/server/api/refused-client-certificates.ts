import type { TLSSocket } from 'node:tls';

/** A connection's two ends as grpc-js reports them to a call (ServerInterceptingCall.getConnectionInfo). */
export interface ConnectionEnds {
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}

/**
 * The client certificates the agent API's TLS check refused, by connection, so the call gate can say why a call on
 * such a connection is not authenticated. The agent API requests client certificates without requiring them (Attest
 * comes before an agent has one), so a refused certificate does not fail the handshake: grpc-js then hands the calls
 * no certificate at all, and an agent presenting an SVID the server sees as expired (its host clock behind the
 * server's: by its own clock the SVID is young, so it neither renews nor re-attests) heard only "this call needs the
 * agent SVID", and retried for ever. Nothing here authenticates anything: it only words the refusal.
 *
 * Held for the connection's life: such connections count as without an agent SVID (agent-api-connections.ts), whose
 * bounds also bound this.
 */
export class RefusedClientCertificates {
  private readonly byEnds = new Map<string, Buffer>();

  /** Notes `socket`'s client certificate when it presented one and TLS refused it; forgotten when the socket closes. */
  record(socket: TLSSocket): void {
    if (socket.authorized) return;
    const raw = socket.getPeerCertificate()?.raw;
    if (raw === undefined) return;
    const key = keyOf(socket);
    this.byEnds.set(key, raw);
    socket.once('close', () => this.byEnds.delete(key));
  }

  /** The certificate TLS refused on the connection with these ends, if it refused one. */
  of(ends: ConnectionEnds): Buffer | undefined {
    return this.byEnds.get(keyOf(ends));
  }

  /** Connections noted now (for tests). */
  get size(): number {
    return this.byEnds.size;
  }
}

function keyOf(ends: ConnectionEnds): string {
  return `${ends.remoteAddress}:${ends.remotePort} ${ends.localAddress}:${ends.localPort}`;
}
