import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { peerCredentials } from './peer-credentials.js';

/**
 * Every operating-system call the Unix workload attestor makes, behind one small object so unit tests can count or
 * fake them. All synchronous on purpose: /proc reads do no disk I/O and cost tens of microseconds, while the async fs
 * API costs hundreds per read on the thread pool.
 */
export interface ProcHooks {
  /** Opens a directory read-only (O_DIRECTORY) and returns the fd; used to pin /proc/<pid>. */
  openDirectory(path: string): number;
  /** Opens a file read-only and returns the fd. */
  openFile(path: string): number;
  closeFile(fd: number): void;
  readText(path: string): string;
  /** The names in a directory (for /proc/<pid>/task: the process's thread ids). */
  readDirectory(path: string): string[];
  /**
   * The link's target, or undefined when it is not valid UTF-8: a selector cannot spell it, and decoding it lossily
   * would give different paths the same selector.
   */
  readLink(path: string): string | undefined;
  /** Identity of the file at `path` (symlinks followed). */
  stat(path: string): FileIdentity;
  fstat(fd: number): FileIdentity;
  /** Lowercase hex SHA-256 of the whole file open as `fd`, read from offset 0. */
  sha256(fd: number): string;
  /** See PeerCredentials.pidfdAlive. */
  pidfdAlive(pidfd: number): boolean;
}

/**
 * What identifies one version of one file: same device, inode, size, modification and change time. The change time
 * is what makes this safe to key a digest by: a file's owner can rewrite it at the same size and set the old mtime
 * back (utimensat), but every write and every utimensat moves the ctime, which only the clock sets.
 */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly size: bigint;
}

/** True when both identities name the same version of the same file. */
export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.size === b.size;
}

/** "dev:ino:mtime:ctime:size": one version of one file, as a map key. */
export function fileKey(f: FileIdentity): string {
  return `${f.dev}:${f.ino}:${f.mtimeNs}:${f.ctimeNs}:${f.size}`;
}

const CHUNK = 1 << 20;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function identity(s: fs.BigIntStats): FileIdentity {
  return { dev: s.dev, ino: s.ino, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, size: s.size };
}

/** The real hooks: node:fs and the peercred addon. */
export const systemProcHooks: ProcHooks = {
  openDirectory: (path) => fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY),
  openFile: (path) => fs.openSync(path, fs.constants.O_RDONLY),
  closeFile: (fd) => fs.closeSync(fd),
  readText: (path) => fs.readFileSync(path, 'utf8'),
  readDirectory: (path) => fs.readdirSync(path),
  readLink(path) {
    const target = fs.readlinkSync(path, 'buffer');
    try {
      return UTF8.decode(target);
    } catch (err) {
      if (!(err instanceof TypeError)) throw err;
      return undefined;
    }
  },
  stat: (path) => identity(fs.statSync(path, { bigint: true })),
  fstat: (fd) => identity(fs.fstatSync(fd, { bigint: true })),
  sha256(fd) {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(CHUNK);
    for (let position = 0; ; ) {
      const n = fs.readSync(fd, buffer, 0, CHUNK, position);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
      position += n;
    }
    return hash.digest('hex');
  },
  pidfdAlive: (pidfd) => peerCredentials().pidfdAlive(pidfd),
};
