import type net from 'node:net';
import type tls from 'node:tls';
import { sourceKey } from '../source-key.js';
import { PlacesBySource } from '../places-by-source.js';

export interface HandshakeLimits {
  /** How long a TCP connection has to finish its TLS handshake. */
  readonly handshakeMs: number;
  /** TCP connections all sources together may have in their TLS handshake at once. */
  readonly handshakesTotal: number;
}

export interface AgentApiHandshakesDeps {
  limits: HandshakeLimits;
  /** Told each time a bound closes a connection, to log it (throttled by the caller). */
  closed(bound: 'handshake-deadline' | 'handshakes-total', fields: Record<string, unknown>): void;
}

interface Pending {
  ends: string;
  source: string;
  deadline: NodeJS.Timeout;
}

/**
 * Bounds TCP connections to the agent API that have not finished their TLS handshake, which no bound after the
 * handshake sees (agent-api-connections.ts): each holds a file descriptor and ~10-15 KB until Node's own handshake
 * timeout of 120 s, so a client opening thousands and sending nothing could hold the server's descriptors and memory.
 * A connection is counted from the moment it is accepted until its handshake is done or it closes, and cut when its
 * deadline passes or when the bound in total is full and it is the oldest of the source holding the most
 * (PlacesBySource): a new connection is closed only when its own source already holds as many as any other.
 * The deadline is a transport timeout, not time logic, so it runs on the system's timers whatever clock the server
 * was given (as the shutdown's grace does, grpc-shutdown.ts): a clock stepped forward, or hours a test simulates, must
 * not cut handshakes in progress. It counts from the moment the connection is accepted, bytes sent meanwhile or not.
 */
export class AgentApiHandshakes {
  private readonly pending = new Map<net.Socket, Pending>();
  /** By the connection's two ends, which the TLS socket at 'secureConnection' shares with the TCP socket under it. */
  private readonly byEnds = new Map<string, net.Socket>();
  private readonly places = new PlacesBySource<net.Socket>();

  constructor(private readonly deps: AgentApiHandshakesDeps) {}

  /** Connections in their TLS handshake now (for tests and the figures in the docs). */
  get inProgress(): number {
    return this.pending.size;
  }

  /** Follows every connection `listener` accepts from now on. */
  watch(listener: tls.Server): void {
    // After tls.Server's own 'connection' listener (added when it was made), which wraps the socket in TLS.
    listener.on('connection', (socket: net.Socket) => this.begin(socket));
    listener.on('secureConnection', (socket: tls.TLSSocket) => {
      const tcp = this.byEnds.get(endsOf(socket));
      if (tcp !== undefined) this.end(tcp);
    });
  }

  private begin(socket: net.Socket): void {
    // Destroyed already (grpc-js drops connections while it has no certificate to serve), or reset before it was
    // accepted: its address is gone with it.
    if (socket.destroyed) return;
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const source = sourceKey(`${socket.remoteAddress}:${socket.remotePort ?? 0}`);
    const { limits } = this.deps;
    if (this.places.size >= limits.handshakesTotal) {
      // A real handshake takes milliseconds, so the oldest one in progress is the one least likely to finish; when
      // the newcomer's source holds as many as any, its own oldest goes (the newcomer itself when it holds none).
      const heaviest = this.places.takeFromHeaviest(source);
      const yielding = heaviest?.holder ?? this.places.takeOldest(source) ?? socket;
      this.deps.closed('handshakes-total', { limit: limits.handshakesTotal, source: heaviest?.source ?? source });
      this.cut(yielding);
      if (yielding === socket) return;
    }
    const deadline = setTimeout(() => {
      this.deps.closed('handshake-deadline', { source, limitMs: limits.handshakeMs });
      this.cut(socket);
    }, limits.handshakeMs);
    // The socket keeps the process up while it is open, and stop() cuts it: the deadline itself need not.
    deadline.unref();
    const ends = endsOf(socket);
    this.pending.set(socket, { ends, source, deadline });
    this.byEnds.set(ends, socket);
    this.places.add(source, socket);
    socket.once('close', () => this.end(socket));
  }

  /**
   * Cuts every connection still in its handshake: the server is stopping, and its listener no longer hands them to
   * anyone. Left to their deadline, each open socket would keep a stopped server's process up for up to 10 s more.
   */
  stop(): void {
    for (const socket of [...this.pending.keys()]) this.cut(socket);
  }

  /** The handshake is over (done, failed, or the connection closed): the connection no longer counts here. */
  private end(socket: net.Socket): void {
    const p = this.pending.get(socket);
    if (p === undefined) return;
    this.pending.delete(socket);
    if (this.byEnds.get(p.ends) === socket) this.byEnds.delete(p.ends);
    clearTimeout(p.deadline);
    this.places.remove(p.source, socket);
  }

  /** Destroying the TCP socket fails the TLS socket over it, which frees its OpenSSL state. */
  private cut(socket: net.Socket): void {
    this.end(socket);
    socket.destroy();
  }
}

/** A TCP connection's two ends, unique among a listener's open connections. */
function endsOf(socket: net.Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort} ${socket.localAddress}:${socket.localPort}`;
}
