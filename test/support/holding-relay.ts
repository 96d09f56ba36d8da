import { TcpRelay } from './tcp-relay.js';

/** Larger than what a server sends between the TLS handshake and its first answer; smaller than an Attest answer. */
const ANSWER_BYTES = 1200;

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
  private relay: TcpRelay | undefined;

  private constructor() {}

  /** A relay on 127.0.0.1:<free port> to `upstream` (host:port). */
  static async start(upstream: string): Promise<HoldingRelay> {
    const self = new HoldingRelay();
    self.relay = await TcpRelay.start(upstream, () => {
      let clientChunks = 0;
      return {
        onClient: () => void clientChunks++,
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

  /** Sends on the `count` chunks held first, and goes on holding the rest and what comes after. */
  releaseFirst(count: number): void {
    for (const send of this.held.splice(0, count)) send();
  }

  close(): Promise<void> {
    return this.relay!.close();
  }
}
