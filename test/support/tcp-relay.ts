import net from 'node:net';
import { once } from 'node:events';

/**
 * What a relay does with one connection's bytes: `onClient` is given what the client sends and a function that sends
 * it on to the upstream; `onUpstream`, what the upstream sends and a function that sends it on to the client; either
 * may call its function later (HoldingRelay);
 * `onUpstreamClose`, the upstream's close and a function that closes the client's side, which it may call later too
 * (after what it holds: TCP delivers a peer's bytes before its close).
 */
export interface ConnectionHooks {
  onClient?(chunk: Buffer, send: () => void): void;
  onUpstream?(chunk: Buffer, send: () => void): void;
  onUpstreamClose?(close: () => void): void;
}

/**
 * A TCP listener on loopback whose every connection is piped to an upstream: a Unix socket, for clients whose Unix
 * socket transport cannot run here (grpc-java's needs Netty's epoll JNI library, which Debian does not ship; the agent
 * then attests the relay, i.e. this test process, not the client), or a TCP address. Bytes pass through unchanged,
 * unless the hooks a connection is given hold some back.
 */
export class TcpRelay {
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    private readonly connect: () => net.Socket,
    private readonly hooks: () => ConnectionHooks,
  ) {}

  /** `upstream`: a Unix socket path, or host:port; `hooks`: called for each connection. */
  static async start(upstream: string, hooks: () => ConnectionHooks = () => ({})): Promise<TcpRelay> {
    const colon = upstream.lastIndexOf(':');
    const connect = upstream.startsWith('/') ? () => net.connect(upstream) : () => net.connect(Number(upstream.slice(colon + 1)), upstream.slice(0, colon));
    const server = net.createServer();
    const relay = new TcpRelay(server, connect, hooks);
    server.on('connection', (client) => relay.pipe(client));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return relay;
  }

  /** `127.0.0.1:<port>` */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `${a.address}:${a.port}`;
  }

  private pipe(client: net.Socket): void {
    const upstream = this.connect();
    const hooks = this.hooks();
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      // A failure is followed by 'close', and either side closing closes the other: a reset reaches the client.
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        const close = (): void => void (s === client ? upstream : client).destroy();
        if (s === upstream && hooks.onUpstreamClose !== undefined) hooks.onUpstreamClose(close);
        else close();
      });
    }
    client.on('data', (chunk: Buffer) => {
      const send = (): void => void upstream.write(chunk);
      if (hooks.onClient === undefined) send();
      else hooks.onClient(chunk, send);
    });
    upstream.on('data', (chunk: Buffer) => {
      const send = (): void => void client.write(chunk);
      if (hooks.onUpstream === undefined) send();
      else hooks.onUpstream(chunk, send);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    await once(this.server, 'close');
  }
}
