import { MeshidError } from '../../common/errors.js';
import type { RateLimiter } from '../../common/rate-limiter.js';
import { fileKey, sameFile, type FileIdentity, type ProcHooks } from './proc-hooks.js';

/** A file version and its digest; undefined when it was not hashed: larger than the limit, or not readable. */
export interface HashedFile {
  readonly file: FileIdentity;
  readonly sha256: string | undefined;
  readonly unhashed?: 'too-large' | 'unreadable';
  /** For 'unreadable': the open's error code (EACCES, EPERM). */
  readonly openError?: string;
}

/** Digests kept per uid, and uids kept: one uid cycling through files evicts only its own digests. */
const ENTRIES_PER_UID = 64;
const MAX_UIDS = 512;

/**
 * SHA-256 of workload executables for the unix `sha256:` selector. Hashing a 94 MiB binary costs ~100 ms, so results
 * are kept per file version (device, inode, size, mtime and ctime: FileIdentity) and files over `maxBytes` are not
 * hashed at all. Hashing runs on the agent's event loop, and a file's owner makes a new version with every touch, so
 * the bytes hashed for each caller's uid come out of a budget (`budget`, in bytes): past it, that uid's attestations
 * fail as unavailable (retryable) until it refills, and everyone else's calls are not held up behind its hashing.
 * For the same reason digests are kept per uid: a uid cycling through many files evicts only its own, never making
 * another uid's big binary be hashed again (at that uid's cost).
 */
export class ExeHashCache {
  /** uid → (file version → digest), both least recently used first. */
  private readonly byUid = new Map<number, Map<string, string>>();

  constructor(
    private readonly hooks: ProcHooks,
    private readonly maxBytes: number,
    private readonly budget?: RateLimiter,
  ) {}

  /**
   * Hashes the file at `path` (for a workload: /proc/.../exe, which opens the very inode the process runs even if
   * the path was replaced). Returns undefined when the file is larger than the limit or its mode lets the agent not
   * read it; throws when it cannot be read otherwise or changes while it is hashed.
   */
  hash(path: string, uid = 0): string | undefined {
    return this.hashFile(path, uid).sha256;
  }

  /**
   * Like hash(), also naming the file version the digest belongs to (or that was not hashed, and why). A digest not
   * yet cached is charged to `uid`, the caller's.
   */
  hashFile(path: string, uid: number): HashedFile {
    let fd: number;
    try {
      fd = this.hooks.openFile(path);
    } catch (err) {
      // EACCES: the file's mode denies the agent reading it (an agent that is not root but has CAP_SYS_PTRACE, which
      // README allows, and an executable of mode 0711 or 0700); EPERM: an LSM says no. The process itself is readable
      // (its exe link was), so it gets no digest, as over the size limit: leaving a selector out can only make fewer
      // entries match, while failing the attestation refused the workload even the entries that name no sha256.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') return { file: this.hooks.stat(path), sha256: undefined, unhashed: 'unreadable', openError: code };
      throw err;
    }
    try {
      const before = this.hooks.fstat(fd);
      if (before.size > BigInt(this.maxBytes)) return { file: before, sha256: undefined, unhashed: 'too-large' };
      const key = fileKey(before);
      const entries = this.entriesOf(uid);
      const hit = entries.get(key);
      if (hit !== undefined) {
        // Refresh its place so the least recently used entry is the one dropped.
        entries.delete(key);
        entries.set(key, hit);
        return { file: before, sha256: hit };
      }
      const wait = this.budget?.take(String(uid), Number(before.size)) ?? 0;
      if (wait > 0) {
        throw new MeshidError(
          'unavailable',
          `workload attestation failed: uid ${uid} has had more executable bytes hashed than the agent allows (a binary changed or replaced in a loop?); retry in ${Math.ceil(wait / 1000)} s`,
        );
      }
      const digest = this.hooks.sha256(fd);
      if (!sameFile(before, this.hooks.fstat(fd))) throw new Error('the executable changed while it was hashed');
      entries.set(key, digest);
      if (entries.size > ENTRIES_PER_UID) entries.delete(entries.keys().next().value as string);
      return { file: before, sha256: digest };
    } finally {
      this.hooks.closeFile(fd);
    }
  }

  /** The uid's digests, made the most recently used uid. */
  private entriesOf(uid: number): Map<string, string> {
    let entries = this.byUid.get(uid);
    if (entries !== undefined) {
      this.byUid.delete(uid);
    } else {
      entries = new Map();
      if (this.byUid.size >= MAX_UIDS) this.byUid.delete(this.byUid.keys().next().value as number);
    }
    this.byUid.set(uid, entries);
    return entries;
  }
}
