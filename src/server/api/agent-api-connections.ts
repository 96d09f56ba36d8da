import http2 from 'node:http2';
import tls, { type TLSSocket } from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { installedGrpcJsVersion } from '../../common/grpc/grpc-js-version.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import type { ParsedCertificate } from '../../common/x509/certificate.js';
import { PlacesBySource } from '../places-by-source.js';
import { sourceKey } from '../source-key.js';
import { AgentApiHandshakes, type HandshakeLimits } from './agent-api-handshakes.js';
import { agentSvidId } from './agent-auth.js';
import type { AgentSvidAnchor } from './agent-svid-anchor.js';
import type { PresentedCertificates } from './presented-certificates.js';
import type { RefusedClientCertificates } from './refused-client-certificates.js';

/** What the connections to the agent API may hold; DEFAULT_CONNECTION_LIMITS says why each is what it is. */
export interface ConnectionLimits extends HandshakeLimits {
  /** Connections without an agent SVID one source address (source-key.ts) may have open at once. */
  readonly unauthenticatedPerSource: number;
  /** Connections without an agent SVID all sources together may have open at once. */
  readonly unauthenticatedTotal: number;
  /** Calls one connection without an agent SVID may have open at once (its HTTP/2 MAX_CONCURRENT_STREAMS). */
  readonly unauthenticatedStreams: number;
  /** How long a connection without an agent SVID stays open with no call in it. */
  readonly unauthenticatedIdleMs: number;
  /** How long a connection without an agent SVID stays open at all, before it takes no new calls... */
  readonly unauthenticatedMaxAgeMs: number;
  /** ...and how long its calls then still get before it is cut (as is one closed idle whose peer keeps its side open). */
  readonly unauthenticatedGraceMs: number;
  /** How long a connection closed for another source's (the bound in total shared) has to finish its calls. */
  readonly evictedGraceMs: number;
  /** Connections presenting one agent's SVID; a newer one cuts the oldest beyond this. */
  readonly perAgent: number;
}

/**
 * Anyone who reaches the port can open a connection. Until its TLS handshake is done nothing tells an agent's from
 * anyone else's, and each holds a file descriptor and ~10-15 KB (6,000 took the server from 85 to 176 MB), which Node
 * lets go only after 120 s (tls.Server's handshakeTimeout):
 * - 10 s to finish the handshake: a real agent's takes milliseconds, and well under a second on a server busy with a
 *   fleet reconnecting at once (each costs it under a millisecond of CPU, and Node takes 511 waiting connections at
 *   a time);
 * - 4,096 in their handshake at once (~50 MB and 4,096 file descriptors at most), far above what a fleet's reconnect
 *   storm has in flight. Beyond it the oldest handshake of the source holding the most is cut, not the new one, so a
 *   client on a few addresses cannot keep another source's agents from connecting. No bound per source: it would
 *   only cut a NAT address's agents while places are free.
 * Once it is done, TLS takes a connection without a client certificate, as an agent attests before it holds one. Such
 * a connection can only attest (or ask for health), one call at a time for an agent, and costs the server ~90 KB
 * (OpenSSL, nghttp2, grpc-js) plus ~13 KB per call open in it; 2,000 of them holding their 100 calls each took the
 * server from 80 MB to 1.7 GB. Bounded, they hold ~120 KB each, 1,024 of them ~130 MB at most (once all 1,024 are
 * held, a source holding fewer than the heaviest takes the place of that one's oldest, so one client on 8 addresses,
 * 8 × 128, cannot keep a ninth address's agents from attesting):
 * - per source 128: above the 100 attempts a source may make in a burst (attest-attempts.ts), so hosts behind one
 *   NAT address attesting together meet that budget (which tells them when to retry) before this bound;
 * - 2 calls: an agent makes one Attest at a time; a health check beside it still fits;
 * - idle 5 s: an agent's attestation connection is done with when its Attest is (the agent then connects again with
 *   its SVID), and one retrying after a refusal reconnects at its next try; a connection never used goes too;
 * - 30 s, then 10 s: a call that never ends (a request whose bytes never come) does not keep its connection; the agent
 *   gives its Attest 30 s, so a real one ends before;
 * - 2 s for the calls of a connection whose place went to another source's: an Attest in it is answered in
 *   milliseconds once its request is in (evict()), and the place is handed on at once, so what the bound holds
 *   exceeds it by the connections closed within 2 s at most.
 * Connections with an agent SVID are not counted against these (only against the handshake bounds, for the
 * milliseconds their handshake takes): a fleet reconnecting at once after a restart, thousands behind one NAT address,
 * is never refused. Each agent holds a few at most (one channel; a second while it moves to a
 * renewed SVID; dead ones the keepalive has not noticed yet), so 8 per agent bounds what one agent's key can hold
 * (8 × 100 calls) without cutting a live agent off.
 */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  unauthenticatedPerSource: 128,
  unauthenticatedTotal: 1024,
  unauthenticatedStreams: 2,
  unauthenticatedIdleMs: 5_000,
  unauthenticatedMaxAgeMs: 30_000,
  unauthenticatedGraceMs: 10_000,
  evictedGraceMs: 2_000,
  perAgent: 8,
  handshakeMs: 10_000,
  handshakesTotal: 4096,
});

export interface AgentApiConnectionsDeps {
  /** `spiffe://<trust domain>/meshid/agent/`. */
  agentIdPrefix: string;
  anchor: AgentSvidAnchor;
  /** Shared with the call gate: a connection's certificate parsed here is a memo hit for its first call. */
  certificates: PresentedCertificates;
  /** Shared with the call gate: the expired agent SVIDs TLS refused here, judged once each, for its refusals to say why. */
  refused?: RefusedClientCertificates;
  clock: Clock;
  log: Logger;
  limits?: Partial<ConnectionLimits>;
}

type Session = http2.ServerHttp2Session;

/**
 * Bounds what connections to the agent API may hold (DEFAULT_CONNECTION_LIMITS). Until its TLS handshake is done a
 * connection counts against the handshake bounds (agent-api-handshakes.ts); then it is judged once: one that presents
 * an agent SVID this server signed counts against that agent's bound; any other (no client certificate, or a
 * workload's, another CA's, an expired one) against the bounds per source address and in total (shared fairly when
 * full), with a stream limit of its own and timers that close it. A connection over a bound is closed with a GOAWAY
 * (ENHANCE_YOUR_CALM) saying why; the server logs each bound that closes one, once a minute per bound.
 * The calls themselves are judged by the call gate and the handlers as before.
 */
export class AgentApiConnections {
  private readonly limits: ConnectionLimits;
  /** Connections without an agent SVID, with the TLS socket under each (to cut it: cutOff). */
  private readonly unauthenticated = new PlacesBySource<Session>();
  private readonly sockets = new WeakMap<Session, TLSSocket>();
  /** The TLS socket under every connection open now, with an agent SVID or without: cut at the stop (cutRemaining). */
  private readonly open = new Set<TLSSocket>();
  private readonly handshakes: AgentApiHandshakes;
  /** Each agent's connections, oldest first. */
  private readonly byAgent = new Map<string, Set<Session>>();
  private readonly throttle: LogThrottle;

  constructor(private readonly deps: AgentApiConnectionsDeps) {
    this.limits = { ...DEFAULT_CONNECTION_LIMITS, ...deps.limits };
    this.throttle = new LogThrottle(deps.clock);
    this.handshakes = new AgentApiHandshakes({
      limits: this.limits,
      closed: (bound, fields) =>
        bound === 'handshake-deadline'
          ? this.warn(bound, fields, `a connection did not finish its TLS handshake within ${this.limits.handshakeMs} ms; it was closed`)
          : this.warn(bound, fields, 'connections in their TLS handshake are at their limit; the oldest of the source holding the most was closed'),
    });
  }

  /** Connections without an agent SVID open now (for tests and the figures in the docs). */
  get unauthenticatedConnections(): number {
    return this.unauthenticated.size;
  }

  /** TCP connections in their TLS handshake now (for tests and the figures in the docs). */
  get handshakesInProgress(): number {
    return this.handshakes.inProgress;
  }

  /** The server is stopping: connections still in their TLS handshake are cut (AgentApiHandshakes.stop). */
  stop(): void {
    this.handshakes.stop();
  }

  /**
   * The server has stopped and its shutdown grace is over: every connection still open is cut with its socket.
   * grpc-js's shutdown closes each one gracefully first, and Node's destroy() of a session closed so only ends the
   * socket and waits for the peer to close its side: one that never does (half-open) would keep the socket, and the
   * stopped process, up (for good with an agent SVID, whose connections have no timers of their own).
   */
  cutRemaining(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }

  /**
   * Follows every connection `server`'s listeners accept from now on; call right after bindAsync, before any
   * connection has finished its handshake.
   */
  watch(server: grpc.Server): void {
    for (const listener of http2Listeners(server)) {
      this.handshakes.watch(listener);
      // The TLS socket under each session, to cut it (cutOff): a session hands out only a proxy of it that refuses
      // destroy(). Node creates the session and emits 'session' within its own 'secureConnection' listener, so the
      // socket seen just before (prepended) is that session's; the one seen after clears it when no session came.
      let handshaken: TLSSocket | undefined;
      listener.prependListener('secureConnection', (socket: TLSSocket) => (handshaken = socket));
      listener.on('secureConnection', () => (handshaken = undefined));
      listener.on('session', (session: Session) => {
        const socket = handshaken;
        handshaken = undefined;
        this.admit(session, socket);
      });
    }
  }

  private admit(session: Session, socket: TLSSocket | undefined): void {
    if (socket?.remoteAddress === undefined) {
      session.destroy();
      return;
    }
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    const agentId = this.agentIdOf(socket);
    if (agentId !== undefined) this.admitAgent(session, agentId);
    else this.admitUnauthenticated(session, socket, sourceKey(`${socket.remoteAddress}:${socket.remotePort ?? 0}`));
  }

  /** The agent the connection's verified client certificate is an SVID of, when this server signed it. */
  private agentIdOf(socket: TLSSocket): string | undefined {
    if (!socket.authorized) return undefined;
    const raw = socket.getPeerCertificate()?.raw;
    if (raw === undefined) return undefined;
    let cert: ParsedCertificate;
    try {
      cert = this.deps.certificates.parse(raw);
    } catch {
      return undefined;
    }
    const id = agentSvidId(cert, this.deps.agentIdPrefix);
    if (id === undefined || !this.deps.anchor.signedByServer(cert, this.deps.clock.now())) return undefined;
    // Parsed once for the connection: its call gate and first authentication find it whatever a storm did to the memo.
    socket.once('close', this.deps.certificates.hold(cert));
    return id;
  }

  private admitAgent(session: Session, agentId: string): void {
    let sessions = this.byAgent.get(agentId);
    if (sessions === undefined) this.byAgent.set(agentId, (sessions = new Set()));
    sessions.add(session);
    session.once('close', () => {
      const held = this.byAgent.get(agentId);
      held?.delete(session);
      if (held?.size === 0) this.byAgent.delete(agentId);
    });
    if (sessions.size <= this.limits.perAgent) return;
    // The oldest, not the newest: a live agent's newest connection is the one it uses, its oldest most likely dead.
    const oldest = sessions.values().next().value!;
    sessions.delete(oldest);
    this.warn('per-agent', { agentId, limit: this.limits.perAgent }, 'an agent opened more connections than it may hold; its oldest was closed');
    refuse(oldest, `agent ${agentId} opened more than ${this.limits.perAgent} connections; this, its oldest, was closed`);
  }

  private admitUnauthenticated(session: Session, socket: TLSSocket, source: string): void {
    const { unauthenticated } = this;
    if (unauthenticated.size >= this.limits.unauthenticatedTotal) {
      // Shared, not first-come: a source holding fewer than the heaviest takes the place of that one's oldest
      // connection (the one most likely stuck or hoarded: an agent's Attest is done in seconds).
      const yielding = unauthenticated.takeFromHeaviest(source);
      if (yielding === undefined) {
        this.warn('total', { limit: this.limits.unauthenticatedTotal }, 'connections without an agent SVID are at their limit; a new one was closed');
        refuse(session, 'the server holds as many connections without an agent SVID as it takes; retry later');
        return;
      }
      this.warn('total-shared', { limit: this.limits.unauthenticatedTotal, source: yielding.source }, "connections without an agent SVID are at their limit; the oldest of the source holding the most was closed for another source's");
      this.evict(
        yielding.holder,
        `the server holds as many connections without an agent SVID as it takes, and ${yielding.source} the most of them; this, its oldest, was closed for another source's`,
      );
    } else if (unauthenticated.heldBy(source) >= this.limits.unauthenticatedPerSource) {
      this.warn('per-source', { source, limit: this.limits.unauthenticatedPerSource }, 'a source address holds as many connections without an agent SVID as it may; a new one was closed');
      refuse(session, `${source} holds as many connections without an agent SVID as it may; retry later`);
      return;
    }
    unauthenticated.add(source, session);
    this.sockets.set(session, socket);
    // Once admitted: a connection closed for a bound needs no refusal worded, nor its certificate checked.
    this.deps.refused?.record(socket);
    session.settings({ maxConcurrentStreams: this.limits.unauthenticatedStreams });
    let idle: NodeJS.Timeout | undefined;
    let grace: NodeJS.Timeout | undefined;
    let open = 0;
    // Closed gracefully, the connection is gone once the peer closes its side too; one that never does would keep
    // its socket and its count for good, so the grace ends with the socket cut.
    const retire = (): void => {
      closeGracefully(session);
      grace ??= transportTimer(() => cutOff(session, socket), this.limits.unauthenticatedGraceMs);
    };
    const closeWhenIdle = (): void => {
      idle = transportTimer(retire, this.limits.unauthenticatedIdleMs);
    };
    const age = transportTimer(retire, this.limits.unauthenticatedMaxAgeMs);
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(idle);
      idle = undefined;
      stream.once('close', () => {
        if (--open === 0 && !session.closed) closeWhenIdle();
      });
    });
    session.once('close', () => {
      clearTimeout(idle);
      clearTimeout(age);
      clearTimeout(grace);
      // A no-op when its place was taken for another source's connection (takeFromHeaviest).
      unauthenticated.remove(source, session);
    });
    closeWhenIdle();
  }

  /**
   * Closes a connection whose place went to another source's: gracefully, with a GOAWAY (NO_ERROR) naming why, and
   * cut after a short grace. Its calls in progress still get their answers: the one most likely in progress is an
   * agent's Attest, and one whose answer a cut at once lost (its GOAWAY overtaking the answer written in the same
   * turn) had spent its join token, so the agent, refused that token on its retry, would stop for good. The grace
   * is short, as the place is handed on at once: what the bound holds may exceed it by the connections evicted
   * within one grace.
   */
  private evict(session: Session, why: string): void {
    if (session.destroyed) return;
    try {
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, session.state.lastProcStreamID ?? 0, Buffer.from(why));
    } catch {
      // Already closing: the cut below ends it all the same.
    }
    const socket = this.sockets.get(session);
    transportTimer(() => {
      session.destroy();
      socket?.destroy();
    }, this.limits.evictedGraceMs);
  }

  private warn(bound: string, fields: Record<string, unknown>, message: string): void {
    const admitted = this.throttle.admit(bound);
    if (admitted !== undefined) this.deps.log.warn({ ...fields, ...admitted }, message);
  }
}

/**
 * A timer of a connection's transport (idle, age, grace) on the system's monotonic timers, whatever clock the server
 * was given, as the handshake deadline is (agent-api-handshakes.ts): each bounds how long a peer may hold a socket,
 * not when a certificate or token is due. On the server's clock a step of the host's wall clock (wallClock fires
 * timers on a forward step), or hours a test simulates, would cut an agent's Attest in progress, whose join token,
 * once spent, is refused on its retry. Unreferenced: the open socket keeps the process up, and its close clears them.
 */
function transportTimer(fn: () => void, ms: number): NodeJS.Timeout {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return timer;
}

/** A GOAWAY naming why (ENHANCE_YOUR_CALM: the peer is over a limit), then the connection is cut. */
function refuse(session: Session, why: string): void {
  if (session.destroyed) return;
  try {
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from(why));
  } catch {
    // Already closing: cut it all the same.
  }
  // After the GOAWAY has gone out: destroy() at once would drop it with the socket.
  setImmediate(() => session.destroy());
}

/** Takes no new calls; those open finish, then the connection closes (once the peer has closed its side too). */
function closeGracefully(session: Session): void {
  if (!session.closed && !session.destroyed) session.close();
}

/**
 * The connection cut, whatever the peer does. session.destroy() alone does not do it once close() has run: Node then
 * ends the socket and waits for the peer to close its side, which a peer that ignores the FIN never does.
 */
function cutOff(session: Session, socket: TLSSocket): void {
  session.destroy();
  socket.destroy();
}

/**
 * The HTTP/2 servers behind `server`'s listeners: an internal of grpc-js 1.14 (`http2Servers`, listener → info), as
 * grpc-js has no public hook per connection. Unlike the shutdown's use of it (grpc-shutdown.ts), a grpc-js that
 * changed it must not start unbounded: it throws, and the tests catch it before a release does. package.json takes
 * any 1.x from 1.14 on, so an install that does not follow package-lock.json can bring one: the message names the
 * version found and the way back.
 */
function http2Listeners(server: grpc.Server): http2.Http2SecureServer[] {
  const listeners: unknown = (server as unknown as { http2Servers?: unknown }).http2Servers;
  const servers = listeners instanceof Map ? [...(listeners.keys() as Iterable<unknown>)] : [];
  if (servers.length === 0 || !servers.every((s) => s instanceof tls.Server)) {
    throw new Error(
      `the installed @grpc/grpc-js (${installedGrpcJsVersion()}) no longer exposes its HTTP/2 servers (http2Servers), ` +
        "which meshid-server needs to bound the agent API's connections, so it does not start. Install the dependency " +
        "versions meshid was released with: npm ci (it follows package-lock.json), not npm install or npm update",
    );
  }
  return servers as http2.Http2SecureServer[];
}
