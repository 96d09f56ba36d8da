/** An HTTP CONNECT proxy on loopback for the HTTPS_PROXY tests: it resolves every host to 127.0.0.1. */
import type { TestContext } from 'node:test';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { teardown } from './teardown.js';

export interface TestProxy {
  readonly port: number;
  readonly connects: Array<{ target: string; authorization: string | undefined }>;
  /** What it answers CONNECT with when not 200. */
  refuseWith: number | undefined;
}

/** Listens on 127.0.0.1 until the test ends; records each CONNECT. */
export async function connectProxy(t: TestContext): Promise<TestProxy> {
  const state: TestProxy = { port: 0, connects: [], refuseWith: undefined };
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req: http.IncomingMessage, client: net.Socket) => {
    state.connects.push({ target: req.url!, authorization: req.headers['proxy-authorization'] });
    if (state.refuseWith !== undefined) {
      client.end(`HTTP/1.1 ${state.refuseWith} No\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const port = Number(req.url!.slice(req.url!.lastIndexOf(':') + 1));
    const upstream = net.connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  teardown(t).after(() => {
    server.closeAllConnections();
    server.close();
  });
  return Object.assign(state, { port: (server.address() as AddressInfo).port });
}
