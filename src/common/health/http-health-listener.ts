import dns from 'node:dns/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { failedPrecondition } from '../errors.js';
import { listenFailure } from '../listen-failure.js';
import type { Logger } from '../log.js';
import { healthListenerAddress, type HealthChecksConfig } from './health-checks-config.js';

/** One probe's answer: `ok` picks 200 or 500, `details` is the body's object (snake_case keys, as SPIRE's). */
export interface HealthVerdict {
  readonly ok: boolean;
  readonly details: Readonly<Record<string, unknown>>;
}

/** What a daemon knows about itself, asked at every request (no cached state: a probe sees the daemon as it is now). */
export interface HealthProbe {
  /** The body's one key, as SPIRE names the subsystem it checked ("agent", "server"). */
  readonly name: string;
  live(): HealthVerdict | Promise<HealthVerdict>;
  ready(): HealthVerdict | Promise<HealthVerdict>;
}

/**
 * Bounds for a listener anyone who reaches its address can connect to. Probes (kubelet, a load balancer) send one
 * small GET per period and wait a second or so, so these are far above real use and keep a flood to a few sockets
 * each cut within seconds. Node checks the header and request timeouts only every connectionsCheckingInterval
 * (30 s by default), hence its lower value here. At MAX_CONNECTIONS a new connection closes the oldest open one
 * rather than being refused (see keepNewestConnections).
 */
const MAX_CONNECTIONS = 64;
const MAX_HEADER_BYTES = 4096;
const REQUEST_TIMEOUT_MS = 5000;
const IDLE_TIMEOUT_MS = 10_000;
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/**
 * SPIRE's health check listener (its `health_checks` block) for a meshid daemon: HTTP/1.1 on an address of its own,
 * apart from the workload socket and its per-uid caps, so a probe never competes with workloads for a connection.
 * GET or HEAD of `live_path` and `ready_path` answer 200 when the probe says so and 500 otherwise, with
 * `{"<name>": {details}}` as JSON (SPIRE's shape); a request with a body 413 (its connection closed, the body unread),
 * other paths 404, other methods 405.
 * A change of either verdict is logged once (a failure at warn with its reason, the recovery at info), not every probe.
 */
export class HttpHealthListener {
  private readonly lastOk: Record<'live' | 'ready', boolean | undefined> = { live: undefined, ready: undefined };

  private constructor(
    private readonly server: http.Server,
    /** The IP address listened on: bind_address, or the address its name resolved to (resolveBindHost). */
    private readonly host: string,
    private readonly config: HealthChecksConfig,
    private readonly probe: HealthProbe,
    private readonly log: Logger,
  ) {}

  /** Listens on the configured address; a port taken or refused fails with the setting named (listen-failure.ts). */
  static async start(config: HealthChecksConfig, probe: HealthProbe, log: Logger, lookup: BindLookup = systemBindLookup): Promise<HttpHealthListener> {
    const settings = 'health_checks.bind_address, health_checks.bind_port';
    const host = await resolveBindHost(config.bindAddress, lookup).catch((err: unknown) => {
      throw failedPrecondition(
        `cannot listen on ${healthListenerAddress(config.bindAddress, config.bindPort)} (${settings}): the host name does not resolve; use an IP address or a name this host resolves`,
        err,
      );
    });
    const server = http.createServer({
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: REQUEST_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    });
    server.keepAliveTimeout = REQUEST_TIMEOUT_MS;
    keepNewestConnections(server, MAX_CONNECTIONS);
    // A connection that sends nothing at all, or stops midway, is cut even between the timeout checks' turns.
    server.setTimeout(IDLE_TIMEOUT_MS, (socket) => socket.destroy());
    const listener = new HttpHealthListener(server, host, config, probe, log);
    server.on('request', (req, res) => void listener.serve(req, res));
    // Without a listener Node answers "Expect: 100-continue" itself with 100 Continue, inviting the body no probe has.
    server.on('checkContinue', (req, res) => void listener.serve(req, res));
    const address = healthListenerAddress(host, config.bindPort);
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error): void => reject(listenFailure(err, address, settings));
      server.once('error', failed);
      server.listen(config.bindPort, host, () => {
        server.off('error', failed);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ err }, 'health check listener failed'));
    log.info({ address: listener.address, live: config.livePath, ready: config.readyPath }, 'serving health checks');
    return listener;
  }

  /** IP:port the listener is bound to (the address a bind_address name resolved to, the port chosen for 0). */
  get address(): string {
    return healthListenerAddress(this.host, this.port);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Stops listening and cuts open connections (a probe's keep-alive must not hold up the daemon's stop). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Probes send no body; one that does is not read, and its connection is not kept, whatever its path or method:
    // a 404 or 405 kept alive would have Node read and drop the body (endless, if chunked) until the request timeout.
    if (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0') {
      return plain(res, 413, 'a health check request carries no body\n', { Connection: 'close' });
    }
    const path = (req.url ?? '').split('?')[0];
    const check = path === this.config.livePath ? 'live' : path === this.config.readyPath ? 'ready' : undefined;
    if (check === undefined) return plain(res, 404, `no such path: this listener answers ${this.config.livePath} and ${this.config.readyPath}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'only GET and HEAD are answered\n', { Allow: 'GET, HEAD' });
    let verdict: HealthVerdict;
    try {
      verdict = await (check === 'live' ? this.probe.live() : this.probe.ready());
    } catch (err) {
      verdict = { ok: false, details: { reason: `the check failed: ${err instanceof Error ? err.message : String(err)}` } };
    }
    this.noteChange(check, verdict);
    const body = `${JSON.stringify({ [this.probe.name]: verdict.details })}\n`;
    res.writeHead(verdict.ok ? 200 : 500, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private noteChange(check: 'live' | 'ready', verdict: HealthVerdict): void {
    const before = this.lastOk[check];
    this.lastOk[check] = verdict.ok;
    if (before === verdict.ok || (before === undefined && verdict.ok)) return;
    if (verdict.ok) this.log.info({ check }, `the ${check} check passes again`);
    else this.log.warn({ check, reason: verdict.details['reason'] }, `the ${check} check fails`);
  }
}

/** Every address a host name resolves to, in the resolver's order (dns.lookup's); injectable for tests. */
export type BindLookup = (host: string) => Promise<ReadonlyArray<{ address: string }>>;

const systemBindLookup: BindLookup = (host) => dns.lookup(host, { all: true });

/**
 * The address a bind_address listens on: an IP address as written; for a host name its first IPv4 address, else its
 * first. Left to Node, a name listens on the resolver's first answer, which for "localhost" (the default) is ::1
 * wherever /etc/hosts lists it (Debian, Ubuntu: RFC 6724 puts ::1 first), and a probe of 127.0.0.1 (a container health
 * check, wget, a kubelet with host 127.0.0.1) is refused. SPIRE, whose keys and default these are, listens on
 * 127.0.0.1 there (Go's listen takes a name's IPv4 address first).
 */
export async function resolveBindHost(host: string, lookup: BindLookup = systemBindLookup): Promise<string> {
  if (net.isIP(host) !== 0) return host;
  const addresses = await lookup(host);
  const chosen = addresses.find((a) => net.isIPv4(a.address)) ?? addresses[0];
  if (chosen === undefined) throw new Error(`${host} resolves to no address`);
  return chosen.address;
}

/**
 * Caps open connections by closing the oldest when one more arrives. Node's maxConnections refuses the new one
 * instead, and then any client that keeps MAX_CONNECTIONS connections open (a keep-alive GET every few seconds holds
 * one indefinitely) has every kubelet probe refused, and the liveness probe restarts a healthy daemon again and again.
 * A probe's connection is the newest and lasts a round trip, so only a flood opening that many within it can cut it.
 */
function keepNewestConnections(server: http.Server, max: number): void {
  // A Set iterates in insertion order: the first is the oldest.
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (open.size <= max) return;
    // Out of the set now, not at its 'close' (later): a burst of arrivals must each close a different one.
    const oldest = open.values().next().value as Socket;
    open.delete(oldest);
    oldest.destroy();
  });
}

function plain(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text), ...headers }).end(text);
}
