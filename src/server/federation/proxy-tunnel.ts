import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { withoutPassword } from './egress-proxy.js';

/**
 * An https.Agent whose connections go through an HTTP CONNECT tunnel of `proxy` (http:// or https://), as Go's
 * net/http makes them for an https URL under HTTPS_PROXY. TLS with the bundle endpoint runs inside the tunnel, so the
 * endpoint is authenticated exactly as on a direct connection; the proxy learns the host and port, nothing more.
 * `cancel` ends a CONNECT still waiting for its answer: the request it was for is gone (the fetch's deadline passed),
 * and a proxy that trickles that answer would otherwise keep the tunnel's socket open for as long as it trickles.
 */
export class ProxyTunnelAgent extends https.Agent {
  constructor(
    private readonly proxy: URL,
    private readonly timeoutMs: number,
    private readonly cancel: AbortSignal,
  ) {
    super({ keepAlive: false });
  }

  // Node's Agent calls this with a callback, and waits for it when nothing is returned.
  override createConnection(options: https.RequestOptions, done?: (err: Error | null, stream: Duplex) => void): undefined {
    openTunnel(this.proxy, options.host!, Number(options.port), this.timeoutMs, this.cancel).then(
      (socket) => done!(null, tls.connect({ ...(options as tls.ConnectionOptions), socket })),
      (err: Error) => done!(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** A raw TCP stream to host:port through the proxy; fails with a message naming the proxy (never its password). */
function openTunnel(proxy: URL, host: string, port: number, timeoutMs: number, cancel: AbortSignal): Promise<Socket> {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const shown = `${withoutPassword(proxy)} (HTTPS_PROXY)`;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: target };
    if (proxy.username !== '') {
      const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      headers['proxy-authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    }
    const tlsToProxy = proxy.protocol === 'https:';
    const request = (tlsToProxy ? https : http).request({
      host: proxy.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: proxy.port === '' ? (tlsToProxy ? 443 : 80) : Number(proxy.port),
      method: 'CONNECT',
      path: target,
      headers,
      agent: false,
      timeout: timeoutMs,
    });
    // Only until the proxy answers: from then on the socket is the fetch's, which ends it itself. The fetch's reason
    // (its deadline) is the answer, not the hang-up that destroying the request causes; it names the proxy, since the
    // proxy, not the endpoint, is what kept the fetch waiting, as the CONNECT's own timeout says it.
    const onCancel = () => {
      const why = cancel.reason instanceof Error ? cancel.reason.message : 'the fetch ended';
      reject(new Error(`cannot tunnel through the proxy ${shown}: no answer to CONNECT ${target} (${why})`));
      request.destroy();
    };
    cancel.addEventListener('abort', onCancel, { once: true });
    request.once('close', () => cancel.removeEventListener('abort', onCancel));
    request.once('connect', (res, socket, head) => {
      cancel.removeEventListener('abort', onCancel);
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Error(`the proxy ${shown} answered HTTP ${res.statusCode} to CONNECT ${target}`));
        return;
      }
      // The tunnel is the TLS connection's now; its timeouts are the fetch's.
      socket.setTimeout(0);
      request.removeAllListeners('timeout');
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    // A proxy that refuses without tunnelling answers an ordinary response.
    request.once('response', (res) => {
      res.resume();
      reject(new Error(`the proxy ${shown} answered HTTP ${res.statusCode} to CONNECT ${target}`));
    });
    request.once('timeout', () => request.destroy(new Error(`no answer to CONNECT ${target} within ${timeoutMs / 1000} s`)));
    request.once('error', (err) => reject(new Error(`cannot tunnel through the proxy ${shown}: ${err.message}`)));
    if (cancel.aborted) onCancel();
    else request.end();
  });
}
