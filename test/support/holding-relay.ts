import net from 'node:net';
import { once } from 'node:events';

/** Larger than what a server sends between the TLS handshake and its first answer; smaller than an Attest answer. */
const ANSWER_BYTES = 1200;

/**
 * A TCP relay to meshid-server's agent API that can hold the server's answers: every connection's bytes pass through
 * unchanged, except that the server's answers (from the first chunk of ANSWER_BYTES after the TLS handshake on) are
 * held back while `holding` is set, until `release()`. So a call gets to the server and is answered there (a join token spent) while its
 * client still waits: a call in flight for as long as a test needs, without touching either process.
 */
export class HoldingRelay {
  holding = false;
  private readonly held: Array<() => void> = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    private readonly upstream: { host: string; port: number },
  ) {}

  /** A relay on 127.0.0.1:<free port> to `upstream` (host:port). */
  static async start(upstream: string): Promise<HoldingRelay> {
    const i = upstream.lastIndexOf(':');
    const server = net.createServer();
    const relay = new HoldingRelay(server, { host: upstream.slice(0, i), port: Number(upstream.slice(i + 1)) });
    server.on('connection', (client) => relay.pipe(client));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return relay;
  }

  /** `127.0.0.1:<port>`, for the agent's --server-address. */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `${a.address}:${a.port}`;
  }

  /** Sends on what was held, and holds nothing from now on. */
  release(): void {
    this.holding = false;
    for (const send of this.held.splice(0)) send();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pipe(client: net.Socket): void {
    const upstream = net.connect(this.upstream.port, this.upstream.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        (s === client ? upstream : client).destroy();
      });
    }
    // The client's first chunk is its ClientHello and its second, sent once it has the server's whole handshake
    // flight, the end of its own. After that the server sends its session tickets and HTTP/2 settings (~600 bytes),
    // which the client waits for before its first request, and then its answers: an Attest answer carries the agent
    // SVID's chain and the bundle (~2 KB). Held from the first chunk of that size on.
    let clientChunks = 0;
    client.on('data', (d: Buffer) => {
      clientChunks++;
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      const send = (): void => void client.write(d);
      if (this.holding && clientChunks >= 2 && (d.length >= ANSWER_BYTES || this.held.length > 0)) this.held.push(send);
      else send();
    });
  }
}
