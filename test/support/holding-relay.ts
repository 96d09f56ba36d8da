import { TcpRelay } from './tcp-relay.js';

/** Larger than what a server sends between the TLS handshake and its first answer; smaller than an Attest answer. */
const ANSWER_BYTES = 1200;

/**
 * Larger than the control frames a client sends unasked (a keepalive PING, a WINDOW_UPDATE, a SETTINGS ack: under
 * 40 bytes each once in a TLS record); smaller than a unary request on a new stream (its :path alone is ~35 bytes).
 */
const REQUEST_BYTES = 100;

/** One connection's client side, while its requests are held (holdRequests). */
interface ClientSide {
  holding: boolean;
  readonly held: Array<{ bytes: number; send: () => void }>;
}

/**
 * A TCP relay to meshid-server's agent API that can hold the server's answers: every connection's bytes pass through
 * unchanged, except that the server's answers (from the first chunk of ANSWER_BYTES after the TLS handshake on) are
 * held back while `holding` is set, until `release()`. So a call gets to the server and is answered there (a join token spent) while its
 * client still waits: a call in flight for as long as a test needs, without touching either process.
 *
 * The client's first chunk is its ClientHello and its second, sent once it has the server's whole handshake flight,
 * the end of its own. After that the server sends its session tickets and HTTP/2 settings (~600 bytes), which the
 * client waits for before its first request, and then its answers: an Attest answer carries the agent SVID's chain
 * and the bundle (~2 KB). Held from the first chunk of that size on, counted for each connection.
 */
export class HoldingRelay {
  holding = false;
  private readonly held: Array<() => void> = [];
  private readonly clients = new Set<ClientSide>();
  private relay: TcpRelay | undefined;

  private constructor() {}

  /** A relay on 127.0.0.1:<free port> to `upstream` (host:port). */
  static async start(upstream: string): Promise<HoldingRelay> {
    const self = new HoldingRelay();
    self.relay = await TcpRelay.start(upstream, () => {
      let clientChunks = 0;
      const side: ClientSide = { holding: false, held: [] };
      self.clients.add(side);
      return {
        onClient: (chunk, send) => {
          clientChunks++;
          if (side.holding) side.held.push({ bytes: chunk.length, send });
          else send();
        },
        onUpstream: (chunk, send) => {
          if (self.holding && clientChunks >= 2 && (chunk.length >= ANSWER_BYTES || self.held.length > 0)) self.held.push(send);
          else send();
        },
        // A server that closed the connection after answers still held: they reach the client first.
        onUpstreamClose: (close) => (self.held.length > 0 ? self.held.push(close) : close()),
      };
    });
    return self;
  }

  /** `127.0.0.1:<port>`, for the agent's --server-address. */
  get address(): string {
    return this.relay!.address;
  }

  /** How many chunks are held now. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Sends on what was held, and holds nothing from now on. */
  release(): void {
    this.holding = false;
    for (const send of this.held.splice(0)) send();
  }

  /**
   * From now on holds what the client sends on the connections open now (connections opened later pass): a call made
   * on one of them now reaches neither the server nor an answer, until releaseRequests().
   */
  holdRequests(): void {
    for (const side of this.clients) side.holding = true;
  }

  /** How many held client chunks are the size of a request (REQUEST_BYTES), not of the control frames sent unasked. */
  get heldRequestCount(): number {
    let n = 0;
    for (const side of this.clients) n += side.held.filter((h) => h.bytes >= REQUEST_BYTES).length;
    return n;
  }

  /** Sends on, in order, what holdRequests() held, and holds client bytes no more. */
  releaseRequests(): void {
    for (const side of this.clients) {
      side.holding = false;
      for (const h of side.held.splice(0)) h.send();
    }
  }

  close(): Promise<void> {
    return this.relay!.close();
  }
}
