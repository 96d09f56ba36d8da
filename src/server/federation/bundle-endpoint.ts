import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseHostPort } from '../../common/host-port.js';
import type { Logger } from '../../common/log.js';
import { bundleToSpiffeJson, type TrustBundle } from '../../common/spiffe/bundle.js';
import type { ServingCert } from './serving-cert-file.js';

/**
 * What the endpoint serves and presents, both live: the CA's published bundle, and for https_spiffe the server's
 * own SVID, for https_web the operator's web PKI certificate (serving-cert-file.ts).
 */
export interface BundleEndpointSources {
  profile: 'https_spiffe' | 'https_web';
  bundle(): TrustBundle;
  onBundleChange(listener: (bundle: TrustBundle) => void): () => void;
  servingCert(): ServingCert;
  onServingCertChange(listener: (cert: ServingCert) => void): () => void;
}

export interface BundleEndpointOptions {
  /** host:port; port 0 picks a free one (see port). */
  address: string;
  sources: BundleEndpointSources;
  log: Logger;
  /** Called once the endpoint has closed: releases what feeds its sources. */
  onClose?: () => void;
}

/**
 * The SPIFFE bundle endpoint (Trust Domain and Bundle §5): an HTTPS server that answers GET with the own trust
 * domain's bundle document (SPEC-NOTES §6: `keys`, `spiffe_sequence`, `spiffe_refresh_hint`). Under profile
 * https_spiffe it presents the server's own SVID (spiffe://<td>/meshid/server), which a federating peer
 * authenticates with the bundle it fetched last; under https_web, a web PKI certificate the peer checks against its
 * system roots, so a peer needs no seed bundle. These are what SPIRE's `federates_with ... bundle_endpoint_profile`
 * polls. Every path serves the document, as SPIRE's endpoint does; methods other than GET and HEAD get 405.
 */
export class BundleEndpoint {
  private document: string;
  private readonly unsubscribe: Array<() => void> = [];

  private constructor(
    private readonly server: https.Server,
    private readonly sources: BundleEndpointSources,
    private readonly log: Logger,
    private readonly onClose: (() => void) | undefined,
  ) {
    this.document = bundleToSpiffeJson(sources.bundle());
  }

  static async start(options: BundleEndpointOptions): Promise<BundleEndpoint> {
    const { host, port } = parseHostPort(options.address, 'bundle_endpoint_address');
    const serving = options.sources.servingCert();
    const server = https.createServer({ cert: serving.certChainPem, key: serving.privateKeyPem, minVersion: 'TLSv1.2' });
    const endpoint = new BundleEndpoint(server, options.sources, options.log, options.onClose);
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
      options.sources.onServingCertChange((next) => server.setSecureContext({ cert: next.certChainPem, key: next.privateKeyPem, minVersion: 'TLSv1.2' })),
    );
    options.log.info({ address: `${host}:${endpoint.port}`, profile: options.sources.profile }, 'bundle endpoint listening');
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
    this.onClose?.();
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
