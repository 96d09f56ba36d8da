import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseHostPort } from '../../common/host-port.js';
import type { Logger } from '../../common/log.js';
import { bundleToSpiffeJson, type TrustBundle } from '../../common/spiffe/bundle.js';
import type { ServerIdentity } from '../server-svid.js';

/** What the endpoint serves and presents: the CA's published bundle and the server's own SVID, both live. */
export interface BundleEndpointSources {
  bundle(): TrustBundle;
  onBundleChange(listener: (bundle: TrustBundle) => void): () => void;
  identity(): ServerIdentity;
  onIdentityChange(listener: (id: ServerIdentity) => void): () => void;
}

export interface BundleEndpointOptions {
  /** host:port; port 0 picks a free one (see port). */
  address: string;
  sources: BundleEndpointSources;
  log: Logger;
}

/**
 * The SPIFFE bundle endpoint (Trust Domain and Bundle §5), profile https_spiffe: an HTTPS server that answers GET with
 * the own trust domain's bundle document (SPEC-NOTES §6: `keys`, `spiffe_sequence`, `spiffe_refresh_hint`), under the
 * server's own SVID (spiffe://<td>/meshid/server), which a federating peer authenticates with the bundle it fetched
 * last. This is what SPIRE's `federates_with ... bundle_endpoint_profile "https_spiffe"` polls. Every path serves the
 * document, as SPIRE's endpoint does; methods other than GET and HEAD get 405.
 */
export class BundleEndpoint {
  private document: string;
  private readonly unsubscribe: Array<() => void> = [];

  private constructor(
    private readonly server: https.Server,
    private readonly sources: BundleEndpointSources,
    private readonly log: Logger,
  ) {
    this.document = bundleToSpiffeJson(sources.bundle());
  }

  static async start(options: BundleEndpointOptions): Promise<BundleEndpoint> {
    const { host, port } = parseHostPort(options.address, 'bundle_endpoint_address');
    const id = options.sources.identity();
    const server = https.createServer({ cert: id.certChainPem, key: id.privateKeyPem, minVersion: 'TLSv1.2' });
    const endpoint = new BundleEndpoint(server, options.sources, options.log);
    server.on('request', (req, res) => endpoint.serve(req, res));
    // A peer that connects and sends nothing must not hold a socket for long.
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => options.log.error({ err }, 'bundle endpoint failed'));
    server.on('tlsClientError', (err) => options.log.debug({ err }, 'bundle endpoint: a TLS handshake failed'));
    endpoint.unsubscribe.push(
      options.sources.onBundleChange((bundle) => {
        endpoint.document = bundleToSpiffeJson(bundle);
      }),
      options.sources.onIdentityChange((next) => server.setSecureContext({ cert: next.certChainPem, key: next.privateKeyPem, minVersion: 'TLSv1.2' })),
    );
    options.log.info({ address: `${host}:${endpoint.port}`, profile: 'https_spiffe' }, 'bundle endpoint listening');
    return endpoint;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const off of this.unsubscribe) off();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('only GET serves the bundle\n');
      return;
    }
    const body = this.document;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    this.log.debug({ peer: req.socket.remoteAddress, sequence: this.sources.bundle().sequence }, 'bundle served');
  }
}
