import net from 'node:net';
import { once } from 'node:events';

/**
 * A stub transport: a TCP listener on loopback whose every connection is piped to a Unix socket, for clients whose
 * Unix socket transport cannot run here (grpc-java's needs Netty's epoll JNI library, which Debian does not ship).
 * The agent attests the relay, i.e. this test process, not the client; bytes pass through unchanged.
 */
export class TcpRelay {
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server) {}

  static async start(socketPath: string): Promise<TcpRelay> {
    const server = net.createServer();
    const relay = new TcpRelay(server);
    server.on('connection', (client) => relay.pipe(client, socketPath));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return relay;
  }

  /** `127.0.0.1:<port>` */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `${a.address}:${a.port}`;
  }

  private pipe(client: net.Socket, socketPath: string): void {
    const upstream = net.connect(socketPath);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      // A failure is followed by 'close', and either side closing closes the other: a reset reaches the client.
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        (s === client ? upstream : client).destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    await once(this.server, 'close');
  }
}
