import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { peerCredentials, type PeerInfo } from '../../src/agent/attestor/peer-credentials.js';

/**
 * Real processes on real Unix sockets for the peer-credential and attestation tests: a listener that records each
 * accepted connection's SO_PEERCRED and pidfd the way the agent does, and child processes that connect to it as a
 * chosen uid/gid (the tests run as root).
 */

/** A peer as a test holds it: mutable so a test can mark it closed or swap fields. */
export interface TestPeer extends PeerInfo {
  pid: number;
  uid: number;
  gid: number;
  pidfd: number;
  closed: boolean;
}

/** A temp directory every uid can traverse (children running as nobody must reach the socket). */
export function publicTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

export class PeerListener {
  private readonly waiting: Array<(peer: { socket: net.Socket; peer: TestPeer }) => void> = [];
  private readonly accepted: Array<{ socket: net.Socket; peer: TestPeer }> = [];
  private readonly open = new Set<{ socket: net.Socket; peer: TestPeer }>();

  private constructor(
    private readonly server: net.Server,
    readonly socketPath: string,
  ) {}

  static async listen(socketPath: string): Promise<PeerListener> {
    const pc = peerCredentials();
    let self: PeerListener | undefined;
    const server = net.createServer((socket) => {
      const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
      const cred = pc.peerCred(fd);
      const entry = { socket, peer: { ...cred, pidfd: pc.peerPidfd(fd), closed: false } };
      socket.on('error', () => {});
      self!.open.add(entry);
      const waiter = self!.waiting.shift();
      if (waiter) waiter(entry);
      else self!.accepted.push(entry);
    });
    server.listen(socketPath);
    await once(server, 'listening');
    fs.chmodSync(socketPath, 0o777);
    self = new PeerListener(server, socketPath);
    return self;
  }

  /** The next accepted connection, with the credentials taken at accept. */
  next(): Promise<{ socket: net.Socket; peer: TestPeer }> {
    const ready = this.accepted.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Ends one connection and closes its pidfd, as the agent does on 'close'. */
  release(entry: { socket: net.Socket; peer: TestPeer }): void {
    if (!this.open.delete(entry)) return;
    entry.socket.destroy();
    if (entry.peer.pidfd >= 0) peerCredentials().closeFd(entry.peer.pidfd);
    entry.peer.pidfd = -1;
    entry.peer.closed = true;
  }

  async close(): Promise<void> {
    for (const entry of [...this.open]) this.release(entry);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export interface ClientOptions {
  uid?: number;
  gid?: number;
  /** Supplementary groups, set by the child itself (as root) before it drops to uid/gid. */
  groups?: number[];
  /**
   * Runs the client from this copy of the node binary, named in bytes so a test can use a path that is not valid
   * UTF-8 (a shell execs it: spawn's arguments are strings).
   */
  exe?: Buffer;
}

/**
 * A node child that connects to `socketPath` and stays connected until `stop()` (which closes its stdin). With
 * `groups` the child sets its own groups and ids (spawn's uid/gid options would clear supplementary groups).
 */
export class ClientProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;

  constructor(socketPath: string, options: ClientOptions = {}) {
    const script = `
      const net = require('node:net');
      const o = JSON.parse(process.argv[1]);
      if (o.groups) { process.setgroups(o.groups); process.setgid(o.gid); process.setuid(o.uid); }
      const s = net.connect(o.socketPath, () => process.stdout.write('connected\\n'));
      s.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
      process.stdin.on('end', () => process.exit(0));
      process.stdin.resume();`;
    const spawnIds = options.groups === undefined ? { uid: options.uid, gid: options.gid } : {};
    const { exe, ...clientOptions } = options;
    const args = ['-e', script, JSON.stringify({ socketPath, ...clientOptions })];
    const octal = (bytes: Buffer): string => [...bytes].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
    const [command, argv] =
      exe === undefined ? [process.execPath, args] : ['/bin/sh', ['-c', `exec "$(printf '${octal(exe)}')" "$@"`, 'sh', ...args]];
    this.child = spawn(command, argv, {
      stdio: ['pipe', 'pipe', 'inherit'],
      ...spawnIds,
    });
    this.exited = once(this.child, 'exit').then(() => undefined);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Closes stdin so the child exits; resolves once it has exited and node has reaped it. */
  async stop(): Promise<void> {
    this.child.stdin?.end();
    await this.exited;
  }
}

/** Reads the uid → name table of /etc/passwd (or gid → name of /etc/group) independently of the code under test. */
export function namesFrom(file: '/etc/passwd' | '/etc/group'): Map<number, string> {
  const names = new Map<number, string>();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id && /^\d+$/.test(id) && !names.has(Number(id))) names.set(Number(id), name);
  }
  return names;
}
