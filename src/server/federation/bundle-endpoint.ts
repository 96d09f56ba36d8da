import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseHostPort } from '../../common/host-port.js';
import { listenFailure } from '../../common/listen-failure.js';
import type { Logger } from '../../common/log.js';
import { bundleToSpiffeJson, type TrustBundle } from '../../common/spiffe/bundle.js';
import { sourceKey } from '../source-key.js';
import type { ServingCert } from './serving-cert-file.js';

/**
 * Partners poll every few minutes (the refresh hint is 300 s), so a few hundred connections at once is already far
 * beyond any real load; the caps keep a flood from taking the process's descriptors.
 */
const MAX_CONNECTIONS = 256;
const MAX_CONNECTIONS_PER_SOURCE = 16;
const CONNECTIONS_CHECKING_INTERVAL_MS = 1_000;

/**
 * TLS as Mozilla's "intermediate" configuration has it, which SPIFFE Federation §5.1 requires of bundle endpoint
 * servers: TLS 1.2 and 1.3, and under TLS 1.2 only ECDHE key exchange with AEAD suites. Node's default list would also
 * accept CBC suites (ECDHE-ECDSA-AES128-SHA and the like). No DHE suites: they need parameters meshid does not ship.
 * Given to every secure context the endpoint makes, the first and each one for a renewed certificate.
 */
const TLS_OPTIONS = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
} as const;

/** Closes a connection that would give one source (IPv4 address, IPv6 /64) more than its share. */
function limitPerSource(server: https.Server, log: Logger): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const source = sourceKey(`${socket.remoteAddress ?? ''}:0`);
    const count = (open.get(source) ?? 0) + 1;
    if (count > MAX_CONNECTIONS_PER_SOURCE) {
      log.debug({ source }, 'bundle endpoint: too many connections from one source; closed');
      socket.destroy();
      return;
    }
    open.set(source, count);
    socket.once('close', () => {
      const left = (open.get(source) ?? 1) - 1;
      if (left === 0) open.delete(source);
      else open.set(source, left);
    });
  });
}

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
  /** How long a connection may take to complete TLS, then its request, and stay silent either way (default 10 s). */
  timeoutMs?: number;
}

/**
 * The SPIFFE bundle endpoint (Trust Domain and Bundle §5): an HTTPS server that answers GET with the own trust
 * domain's bundle document (SPEC-NOTES §6: `keys`, `spiffe_sequence`, `spiffe_refresh_hint`). Under profile
 * https_spiffe it presents the server's own SVID (spiffe://<td>/meshid/server), which a federating peer
 * authenticates with the bundle it fetched last; under https_web, a web PKI certificate the peer checks against its
 * system roots, so a peer needs no seed bundle. These are what SPIRE's `federates_with ... bundle_endpoint_profile`
 * polls. Every path serves the document (the spec leaves the path to the operator; SPIRE's endpoint serves "/" only
 * and answers 404 elsewhere, so a URL that works here may not against SPIRE); methods other than GET and HEAD get 405
 * (SPIRE answers 405 to HEAD too).
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
    const timeoutMs = options.timeoutMs ?? 10_000;
    // A peer that connects and sends nothing, before TLS or after, must not hold a socket for long: the endpoint faces
    // the internet from the process that serves the agent API and the admin socket, and shares their descriptors, and
    // MAX_CONNECTIONS silent peers would keep partners from polling. handshakeTimeout covers the time before TLS is up;
    // Node's headersTimeout only starts with a request's first byte, so `timeout` (no byte either way for that long)
    // covers a peer silent after TLS.
    const server = https.createServer({
      cert: serving.certChainPem, key: serving.privateKeyPem, ...TLS_OPTIONS, handshakeTimeout: timeoutMs,
      // headersTimeout and requestTimeout are enforced at this interval (Node's default 30 s would let a peer trickling
      // its headers hold a connection up to 30 s past them).
      connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
    });
    const endpoint = new BundleEndpoint(server, options.sources, options.log, options.onClose);
    server.on('request', (req, res) => endpoint.serve(req, res));
    server.timeout = timeoutMs;
    server.headersTimeout = timeoutMs;
    server.requestTimeout = timeoutMs;
    server.maxConnections = MAX_CONNECTIONS;
    limitPerSource(server, options.log);
    // Subscribed before listening: a change while the port is bound (the CA's timers run on) would otherwise be
    // missed, and the bundle read above served until the next change, a root activation delay later, say.
    endpoint.unsubscribe.push(
      options.sources.onBundleChange((bundle) => {
        endpoint.document = bundleToSpiffeJson(bundle);
      }),
      options.sources.onServingCertChange((next) => {
        try {
          server.setSecureContext({ cert: next.certChainPem, key: next.privateKeyPem, ...TLS_OPTIONS });
        } catch (err) {
          // Called from a timer: a throw would end the process, and with it the agent and admin APIs.
          options.log.error({ err }, 'the bundle endpoint cannot present its new certificate; it keeps the previous one');
        }
      }),
    );
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error): void => {
        for (const off of endpoint.unsubscribe) off();
        reject(listenFailure(err, options.address, '--bundle-endpoint-address, bundle_endpoint_address'));
      };
      server.once('error', failed);
      server.listen(port, host, () => {
        server.off('error', failed);
        resolve();
      });
    });
    server.on('error', (err) => options.log.error({ err }, 'bundle endpoint failed'));
    server.on('tlsClientError', (err) => options.log.debug({ err }, 'bundle endpoint: a TLS handshake failed'));
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
