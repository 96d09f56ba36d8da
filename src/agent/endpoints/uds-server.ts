import fs from 'node:fs';
import type http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { peerCredentials, type PeerCredentials, type PeerInfo } from '../attestor/peer-credentials.js';
import { removeStaleSocket } from '../../common/socket-file.js';
import { createDirectory } from '../../common/create-directory.js';
import { callerFields } from './refusal-log.js';
import { createSelfTestServer, runSelfTest } from './uds-self-test.js';
import { PerUidCap } from './per-uid-cap.js';
import { serverSessions } from '../../common/grpc/server-sessions.js';
import { handOverAfterFirstRequest } from './authority-relay.js';
import { SubordinateIds } from '../attestor/subordinate-ids.js';

export interface UdsServerOptions {
  /** Absolute path of the socket file. Its directory is created (0755) when missing. */
  socketPath: string;
  /** The gRPC server the connections are handed to; it is never bound to a port itself. */
  grpcServer: grpc.Server;
  log: Logger;
  /** Socket file mode; default 0o777 because authorization is by attestation (SPEC-NOTES §7). */
  mode?: number;
  /** The addon, replaceable for tests; default the built native/peercred. */
  credentials?: PeerCredentials;
  /** Open connections one uid may hold; more are closed at accept. Default DEFAULT_MAX_CONNECTIONS_PER_UID. */
  maxConnectionsPerUid?: number;
  /** The flag and config key that set socketPath, named when the path is refused (in use, not a socket). */
  setting?: string;
  /**
   * Whose budget a connecting uid spends (connections, reading pauses, and what accountOf() tells the interceptors);
   * default: a subordinate uid's owner's (SubordinateIds, from /etc/subuid), any other uid its own.
   */
  accountOf?: (uid: number) => number;
}

/**
 * Each connection costs the agent two file descriptors (the socket and the peer's pidfd) and some memory, and a
 * connection that never sends anything costs the same. Without a bound, one local user holding idle connections
 * exhausts the agent's descriptors and every workload on the host loses its identity. Far above what a uid's
 * workloads open (an Envoy holds a few; Istio runs every sidecar of a node as one uid: 100 pods, some hundreds).
 */
export const DEFAULT_MAX_CONNECTIONS_PER_UID = 1024;

/** What the peer table holds; `closed` and `pidfd` change when the connection ends. */
interface PeerRecord {
  pid: number;
  uid: number;
  gid: number;
  pidfd: number;
  closed: boolean;
  /** The uid whose per-uid budgets the connection spends (UdsServerOptions.accountOf), fixed at accept. */
  account: number;
}

const PEER_PREFIX = 'uds-peer#';
/**
 * From a failed call to closing its connection when grpc-js's session for it cannot be found (UdsServer.retire): time
 * for grpc-js to write the call's status on an idle machine, not a guarantee.
 */
const RETIRE_DELAY_MS = 50;
/**
 * From a retirement to cutting the connection off, with calls still open on it. They are of the same caller that no
 * longer attests: each fails its recheck before it would send anything, so a few seconds cost nothing, and the failed
 * call's status, sent once its messages are flushed, has them to go out on a loaded machine.
 */
const RETIRE_GRACE_MS = 5000;
const PEER_PATTERN = /^uds-peer#\d+$/;

/**
 * The agent's Unix-socket listener (WL-Endpoint §7 / SPEC-NOTES §7: gRPC over a Unix socket, no TLS, the caller is
 * identified out of band). It owns the `net.Server`; grpc-js only sees accepted connections, injected with the public
 * `createConnectionInjector` API. Each accepted socket gets a unique own `remoteAddress` ("uds-peer#<n>"), which
 * grpc-js returns from `call.getPeer()`, and the peer's SO_PEERCRED credentials plus a pidfd are kept under that key
 * for as long as the connection lives. Handlers and interceptors call `peerOf(call.getPeer())`; `undefined` means an
 * unknown peer and must fail closed.
 *
 * Credentials are those of the process that called connect(); a connection can outlive an exec() or be passed to
 * another process, so attest per RPC and do not treat them as more than a pointer to the process.
 */
export class UdsServer {
  private readonly socketPath: string;
  private readonly setting: string | undefined;
  private readonly grpcServer: grpc.Server;
  private readonly log: Logger;
  private readonly mode: number;
  private readonly credentialsOverride: PeerCredentials | undefined;
  private credentials: PeerCredentials | undefined;
  private readonly peers = new Map<string, PeerRecord>();
  private readonly sockets = new Map<string, net.Socket>();
  private readonly socketsByUid = new Map<number, Set<net.Socket>>();
  private readonly retiring = new WeakSet<net.Socket>();
  /** Uids whose connections pauseReading stopped; a connection still waiting for its first request waits on. */
  private readonly readingPaused = new Set<number>();
  /** A relayed connection's socket, and how its relay is told that readingPaused changed: its handle is not ours. */
  private readonly relayReading = new WeakMap<net.Socket, () => void>();
  private listener: net.Server | undefined;
  private injector: grpc.ConnectionInjector | undefined;
  /** Set only while start() runs its self-test: where our own pid's connection goes. */
  private selfTestInjector: grpc.ConnectionInjector | undefined;
  private socketIno: number | undefined;
  private counter = 0;
  private readonly connectionsPerUid: PerUidCap;
  private readonly accountOfUid: (uid: number) => number;

  constructor(options: UdsServerOptions) {
    if (!path.isAbsolute(options.socketPath)) throw new Error(`socket path must be absolute, got "${options.socketPath}"`);
    this.socketPath = options.socketPath;
    this.setting = options.setting;
    this.grpcServer = options.grpcServer;
    this.log = options.log;
    this.mode = options.mode ?? 0o777;
    this.credentialsOverride = options.credentials;
    this.accountOfUid = options.accountOf ?? new SubordinateIds().accountOf;
    const limit = options.maxConnectionsPerUid ?? DEFAULT_MAX_CONNECTIONS_PER_UID;
    this.connectionsPerUid = new PerUidCap(limit, 'maxConnectionsPerUid', (uid) =>
      this.log.warn(
        { uid, limit },
        'a uid (its subordinate uids in /etc/subuid counted with it) holds the most connections allowed; closing its new ones (agent config max_connections_per_uid)',
      ),
    );
  }

  /**
   * Removes a stale socket file (refusing a live socket or a non-socket), listens, sets the mode, and runs the
   * self-test. Rejects with MeshidError(failed_precondition) for a path it will not take over and
   * MeshidError(internal) when the self-test fails; nothing is left listening then.
   */
  async start(): Promise<void> {
    if (this.listener !== undefined) throw new Error('UdsServer already started');
    // Loading the addon first: a missing build must stop start-up before anything is created.
    this.credentials = this.credentialsOverride ?? peerCredentials();
    createDirectory(path.dirname(this.socketPath), 0o755);
    await removeStaleSocket(this.socketPath, this.setting);

    this.injector = this.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const listener = net.createServer((socket) => this.onConnection(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        // A deep accept queue: with Node's default (511) a burst of connects while the event loop is busy fails with
        // EAGAIN on the client side instead of waiting a moment to be accepted. The kernel caps it at somaxconn.
        listener.listen({ path: this.socketPath, backlog: 4096 }, () => {
          listener.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.injector.destroy();
      this.injector = undefined;
      throw err;
    }
    this.listener = listener;
    listener.on('error', (err) => this.log.error({ err }, 'workload socket listener failed'));
    try {
      fs.chmodSync(this.socketPath, this.mode);
      this.socketIno = fs.statSync(this.socketPath).ino;
      await this.selfTest();
    } catch (err) {
      await this.close();
      throw err;
    }
    this.log.info({ socket: this.socketPath, mode: this.mode.toString(8) }, 'listening on Unix socket');
  }

  /**
   * The connected peer behind a `call.getPeer()` string (in a server interceptor:
   * `call.getConnectionInfo().remoteAddress`), or undefined for anything this server did not accept: fail closed.
   * The returned object turns `closed` when the connection ends; attest synchronously after looking it up.
   */
  peerOf(peer: string): PeerInfo | undefined {
    return this.peers.get(peer);
  }

  /**
   * The uid whose per-uid budgets the connection behind `peer` spends: its caller's uid, or that uid's owner's when it
   * is a subordinate uid (UdsServerOptions.accountOf). Undefined for anything this server did not accept.
   */
  accountOf(peer: string): number | undefined {
    return this.peers.get(peer)?.account;
  }

  /**
   * Stops accepting, closes this listener's gRPC sessions, cuts connections still open, releases their pidfds and
   * unlinks the socket file (only if it is still ours). Shut the gRPC server down first for a graceful drain.
   */
  async close(): Promise<void> {
    const listener = this.listener;
    if (listener === undefined) return;
    this.listener = undefined;
    const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
    this.injector?.destroy();
    this.injector = undefined;
    for (const socket of this.sockets.values()) socket.destroy();
    await closed;
    // libuv unlinks the path it bound when the listener closes; this covers the rest without removing a socket
    // another process has put there since.
    try {
      if (fs.lstatSync(this.socketPath).ino === this.socketIno) fs.unlinkSync(this.socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  private onConnection(socket: net.Socket): void {
    const credentials = this.credentials as PeerCredentials;
    // net.Socket exposes no public fd; the Pipe handle of an accepted Unix socket carries it.
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let record: PeerRecord;
    let account: number;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new Error('accepted socket has no file descriptor');
      const cred = credentials.peerCred(fd);
      account = this.accountOfUid(cred.uid);
      if (!this.connectionsPerUid.admit(account)) {
        socket.destroy();
        return;
      }
      // Pid 0: the peer is in a pid namespace we cannot see. Keep the connection (attestation refuses it with a
      // clear status) but there is no process to pin.
      let pidfd = -1;
      try {
        if (cred.pid > 0) pidfd = credentials.peerPidfd(fd);
      } catch (err) {
        this.connectionsPerUid.release(account);
        throw err;
      }
      record = { pid: cred.pid, uid: cred.uid, gid: cred.gid, pidfd, closed: false, account };
    } catch (err) {
      this.log.warn({ err }, 'dropping a connection whose peer credentials cannot be read');
      socket.destroy();
      return;
    }
    const key = `${PEER_PREFIX}${++this.counter}`;
    // An own property shadows net.Socket's remoteAddress getter; grpc-js reads it through the http2 session.
    Object.defineProperty(socket, 'remoteAddress', { value: key, enumerable: true, writable: false, configurable: false });
    this.peers.set(key, record);
    this.sockets.set(key, socket);
    const ofUid = this.socketsByUid.get(record.account) ?? new Set<net.Socket>();
    this.socketsByUid.set(record.account, ofUid);
    ofUid.add(socket);
    socket.once('close', () => {
      this.peers.delete(key);
      this.sockets.delete(key);
      ofUid.delete(socket);
      if (ofUid.size === 0 && this.socketsByUid.get(record.account) === ofUid) this.socketsByUid.delete(record.account);
      this.connectionsPerUid.release(record.account);
      record.closed = true;
      if (record.pidfd >= 0) {
        const pidfd = record.pidfd;
        record.pidfd = -1;
        try {
          credentials.closeFd(pidfd);
        } catch (err) {
          this.log.error({ err, pidfd }, 'cannot close a peer pidfd');
        }
      }
    });
    this.log.debug({ connection: key, ...callerFields(record) }, 'workload connected');
    handOverAfterFirstRequest(
      socket,
      (connection, readingChanged) => {
        const injector = this.selfTestInjector !== undefined && record.pid === process.pid ? this.selfTestInjector : this.injector;
        if (injector === undefined) {
          socket.destroy();
          return;
        }
        if (readingChanged !== undefined) {
          this.relayReading.set(socket, readingChanged);
          // The relay holds the socket back itself from here on (authority-relay.ts, relay()): undo a stop at the handle.
          if (this.readingPaused.has(record.account)) streamHandleOf(socket)?.readStart();
        }
        injector.injectConnection(connection);
        if (connection !== socket) this.labelRelayedSession(connection, key, record);
      },
      () => this.readingPaused.has(record.account),
    );
  }

  /**
   * Gives a relayed connection's session the peer key grpc-js reads through `session.socket`: Node wraps a stream
   * without a native handle in a socket of its own, whose remoteAddress comes from its `_peername` (an internal, as
   * the `_handle` above). A session left without it has no peer, so its calls fail closed.
   */
  private labelRelayedSession(connection: Duplex, key: string, record: PeerRecord): void {
    const session = serverSessions(this.grpcServer).find((s) => (s.socket as unknown as { stream?: unknown } | undefined)?.stream === connection);
    if (session === undefined) {
      this.log.error({ connection: key, ...callerFields(record) }, 'cannot find the HTTP/2 session of a relayed connection; closing it');
      connection.destroy();
      return;
    }
    (session.socket as unknown as { _peername: { address: string } })._peername = { address: key };
    this.log.debug({ connection: key }, "relaying a connection whose :authority Node's HTTP/2 server refuses (the socket's path, as grpc-java sends), or whose ACK of the agent's SETTINGS had not come");
  }

  /**
   * Closes the connection behind `peer` (a `call.getPeer()` string), so that its holder reconnects with credentials of
   * its own; for a connection whose recorded process exited or changed ids, where every call would fail again. A
   * graceful GOAWAY: the client sends its next call on a new connection, while the failed call's status, which
   * grpc-js may still be writing behind the call's messages, goes out on this one; the connection closes once its
   * calls have ended, and its other calls are cut off after RETIRE_GRACE_MS.
   */
  retire(peer: string): void {
    const socket = this.sockets.get(peer);
    if (socket === undefined || this.retiring.has(socket)) return;
    this.retiring.add(socket);
    const record = this.peers.get(peer);
    this.log.info({ connection: peer, ...(record !== undefined && callerFields(record)) }, 'closing a connection that outlived its caller\'s identity; the client will reconnect');
    const session = this.sessionOf(peer);
    // A session already closing (the client's GOAWAY, which http2 answers with its own) ends once its calls have:
    // ending its socket now would cut the failed call's status off all the same.
    if (session !== undefined) session.close();
    else setTimeout(() => socket.end(), RETIRE_DELAY_MS).unref();
    const cutOff = setTimeout(() => socket.destroy(), RETIRE_GRACE_MS).unref();
    socket.once('close', () => {
      clearTimeout(cutOff);
      this.retiring.delete(socket);
    });
  }

  /**
   * grpc-js's HTTP/2 session on the connection behind `peer`, matched by the remoteAddress its socket was given; also
   * one already closing (close() is then a no-op).
   */
  private sessionOf(peer: string): http2.ServerHttp2Session | undefined {
    return serverSessions(this.grpcServer).find((s) => !s.destroyed && s.socket?.remoteAddress === peer);
  }

  /**
   * Stops reading every connection of `uid` (UidFairQueue's ReadPauser): HTTP/2 frames already read are handled, new
   * ones wait in the kernel and then in the client, held by flow control; nothing fails. http2 consumes the socket's
   * handle, so only the handle's own readStop reaches it (net.Socket.pause does not). A relayed connection's handle
   * is Node's to stop and start (its relay reads it as a net.Socket): its relay is told instead. A connection the uid
   * opens afterwards is read until its first request makes the queue ask again.
   */
  pauseReading(uid: number): void {
    this.readingPaused.add(uid);
    for (const socket of this.socketsByUid.get(uid) ?? []) {
      const relayed = this.relayReading.get(socket);
      if (relayed !== undefined) relayed();
      else streamHandleOf(socket)?.readStop();
    }
  }

  /** Reads every connection of `uid` again after pauseReading. */
  resumeReading(uid: number): void {
    this.readingPaused.delete(uid);
    for (const socket of this.socketsByUid.get(uid) ?? []) {
      const relayed = this.relayReading.get(socket);
      if (relayed !== undefined) relayed();
      else if (!socket.destroyed) streamHandleOf(socket)?.readStart();
    }
  }

  /** Connections open right now (each holds a socket and, usually, a pidfd). */
  openConnections(): number {
    return this.peers.size;
  }

  private async selfTest(): Promise<void> {
    const server = createSelfTestServer((peer) => this.peerOf(peer));
    this.selfTestInjector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    try {
      await runSelfTest(this.socketPath, PEER_PATTERN);
    } finally {
      this.selfTestInjector = undefined;
      server.forceShutdown();
    }
  }
}

/** The libuv stream behind a net.Socket, which http2 reads from directly; null once the socket is closed. */
function streamHandleOf(socket: net.Socket): { readStop(): number; readStart(): number } | undefined {
  const handle = (socket as unknown as { _handle?: { readStop?: () => number; readStart?: () => number } | null })._handle;
  return typeof handle?.readStop === 'function' && typeof handle.readStart === 'function' ? (handle as { readStop(): number; readStart(): number }) : undefined;
}
