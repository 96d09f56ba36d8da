import { systemClock, type Clock } from '../../common/clock.js';
import { MeshidError } from '../../common/errors.js';
import { RateLimiter } from '../../common/rate-limiter.js';
import type { Logger } from '../../common/log.js';
import type { Selector } from '../../common/spiffe/selector.js';
import { failed, outlived } from './attestation-failure.js';
import { AttestationMemo, DEFAULT_MEMO_ENTRIES } from './attestation-memo.js';
import { ExeHashCache, type HashedFile } from './exe-hash-cache.js';
import type { PeerInfo } from './peer-credentials.js';
import { systemProcHooks, type FileIdentity, type ProcHooks } from './proc-hooks.js';
import { checkProcPidNamespace } from './proc-namespace.js';
import { parseProcStatus, parseStartTime, type ProcStatus } from './proc-status.js';
import { UnixAccounts, type AccountNames } from './unix-accounts.js';
import { SubordinateIds } from './subordinate-ids.js';

export interface UnixWorkloadAttestorOptions {
  /** OS access; default the real /proc, /etc and peercred addon. */
  hooks?: ProcHooks;
  /** Executables larger than this get no sha256 selector (they are not hashed). Default 64 MiB. */
  maxHashBytes?: number;
  /** Whether to emit the sha256 selector at all. Default true. */
  sha256?: boolean;
  /**
   * Bytes of executables hashed per caller uid: `rate` per second, up to `burst` at once (default 64 MiB/s, burst
   * 1 GiB or maxHashBytes if larger). Past it that uid's uncached hashes fail as unavailable until the budget refills.
   */
  hashBudget?: { rate: number; burst: number };
  /** For the hash budget; default the system clock. */
  clock?: Clock;
  /** Where /etc/passwd and /etc/group are; for tests. */
  accountFiles?: { passwd?: string; group?: string };
  /**
   * Whose hash budget a caller's uid spends; default its owner's for a subordinate uid (SubordinateIds, /etc/subuid),
   * else its own.
   */
  accountOf?: (uid: number) => number;
  /** How many distinct selector sets to remember (see AttestationMemo); 0 turns the memo off. Default 1,024. */
  memoEntries?: number;
  log?: Logger;
}

const SELECTOR_TYPE = 'unix';
const DEFAULT_MAX_HASH_BYTES = 64 * 1024 * 1024;
// ~6 % of a core at the ~1 GB/s SHA-256 runs at here; the burst covers a host starting its workloads at once.
const DEFAULT_HASH_RATE = 64 * 1024 * 1024;
const DEFAULT_HASH_BURST = 1024 * 1024 * 1024;
const DELETED_SUFFIX = ' (deleted)';
const MAX_WARNED = 256;

/** What the attestor learns about the process while it holds /proc/<pid> open. */
interface ProcessFacts {
  status: ProcStatus;
  /**
   * /proc/<pid>/exe's target as the kernel spells it, " (deleted)" included. Undefined when it is not valid UTF-8.
   * Either way the process gets no path selector (see pathSelector).
   */
  exe: string | undefined;
  exeFile: FileIdentity;
  sha256: string | undefined;
}

/**
 * The unix workload attestor: selectors of type "unix" for the process behind a Unix-socket connection, with values
 * spelled as SPIRE's unix attestor spells them (so entries such as `unix:uid:1000` carry over):
 * `uid:<n>`, `user:<name>`, `gid:<n>`, `group:<name>`, `supplementary_gid:<n>`, `supplementary_group:<name>`,
 * `path:<executable>`, `sha256:<hex>`. Uid and gid are the effective ids from /proc/<pid>/status, as SPIRE's
 * attestor takes them (a setuid program attests as the user it runs as) and as SO_PEERCRED records them; names
 * come from the host's /etc/passwd and /etc/group and are left out when an id has none. `path:` is left out when the
 * executable's path is not valid UTF-8: decoded lossily, different paths would share one selector. It is also left out
 * when the kernel marks the executable " (deleted)" (removed or replaced since exec(), as an in-place package upgrade
 * does): the path now names another file or none. The process still attests by its ids, and `sha256:` is the digest
 * of the image it runs, read through /proc/<pid>/exe, so entries keyed on ids or content keep matching and only
 * entries naming the path stop. (SPIRE's attestor with discover_workload_path also hashes /proc/<pid>/exe, and gives
 * the kernel's text as the path, `path:<path> (deleted)`, which entries naming the path do not match either.)
 * A process whose main thread has exited while other threads run (the thread-group leader is a zombie, whose
 * /proc/<pid>/exe fails) is attested from its live thread with the lowest tid (liveThread).
 *
 * Fails closed (SPEC-NOTES §7: attestation failure is UNAVAILABLE) whenever it cannot be sure the facts belong to the
 * process that connected: pid not visible (other pid namespace), connection closed, process exited, ids changed
 * since connect(), or pid recycled. The guard against pid reuse: with a pidfd (taken at accept),
 * /proc/<pid> is opened as a directory, the pidfd is checked alive (so the directory is that process's), and every
 * file is read through the directory handle, which fails rather than show another process once it exits. Without a
 * pidfd the /proc start time is compared before and after the reads. The failures that would repeat on every call of
 * the connection (the caller exited, or changed its ids since connect()) are marked (attestation-failure.ts) so that
 * the endpoint closes the connection: its holder reconnects and is attested from credentials of its own. A process
 * that changed ids is never attested under the new ones on the old connection: a process that connected, forked and
 * then exec()ed a setuid binary would otherwise lend the child's calls the binary's uid.
 *
 * What no scheme can stop: a process that connects and then exec()s a trusted binary, or hands its connection to a
 * child; nor a process that runs a trusted binary with code of its own (LD_PRELOAD, ptrace by its uid) or re-points
 * its own /proc/<pid>/exe at one (prctl PR_SET_MM_MAP from a user namespace of its own): `path:` and `sha256:` name
 * the file a process was started from, and only the ids are a boundary (README). The agent needs root (or CAP_SYS_PTRACE) to read another user's /proc/<pid>/exe (without, such callers fail naming
 * that remedy; an executable whose mode it may not read gets no `sha256:`, see ExeHashCache), and must share the host pid
 * namespace with its workloads.
 */
export class UnixWorkloadAttestor {
  private readonly hooks: ProcHooks;
  private readonly accounts: UnixAccounts;
  private readonly hashes: ExeHashCache | undefined;
  private readonly log: Logger | undefined;
  private readonly warnedUnhashed = new Set<string>();
  private warnedNoPtrace = false;
  private readonly memo: AttestationMemo | undefined;
  private readonly accountOf: (uid: number) => number;

  /** Throws MeshidError('failed_precondition') when /proc is not of the agent's pid namespace (checkProcPidNamespace). */
  constructor(options: UnixWorkloadAttestorOptions = {}) {
    this.hooks = options.hooks ?? systemProcHooks;
    // The real /proc whatever the hooks: a fact about the agent's own process, not about a caller.
    checkProcPidNamespace(systemProcHooks);
    const maxHashBytes = options.maxHashBytes ?? DEFAULT_MAX_HASH_BYTES;
    if (!Number.isSafeInteger(maxHashBytes) || maxHashBytes < 0) throw new Error(`maxHashBytes must be a whole number ≥ 0, got ${maxHashBytes}`);
    this.accounts = new UnixAccounts(this.hooks, options.accountFiles);
    const budget = options.hashBudget ?? { rate: DEFAULT_HASH_RATE, burst: Math.max(DEFAULT_HASH_BURST, maxHashBytes) };
    const limiter = new RateLimiter(budget.rate, budget.burst, options.clock ?? systemClock);
    this.hashes = options.sha256 === false ? undefined : new ExeHashCache(this.hooks, maxHashBytes, limiter);
    this.log = options.log;
    this.accountOf = options.accountOf ?? new SubordinateIds().accountOf;
    const memoEntries = options.memoEntries ?? DEFAULT_MEMO_ENTRIES;
    this.memo = memoEntries === 0 ? undefined : new AttestationMemo(memoEntries);
  }

  /**
   * Selectors for the peer, in a fixed order (uid, user, gid, group, supplementary ids and names, path, sha256).
   * Synchronous: /proc reads do no disk I/O. Throws MeshidError('unavailable', 'workload attestation failed: ...').
   * Every call reads the caller's status and executable again; when those (and /etc/passwd, /etc/group) are what an
   * earlier attestation under a pidfd saw, its selectors are reused instead of being worked out again (recall()).
   */
  attest(peer: PeerInfo): readonly Selector[] {
    if (peer.closed) throw failed('the connection has closed');
    if (!Number.isSafeInteger(peer.pid) || peer.pid <= 0) {
      throw failed('the caller is in a pid namespace the agent cannot see (pid 0); run the agent in the host pid namespace');
    }
    const names = this.accounts.current();
    const recalled = this.recall(peer, names.generation);
    // The memo's own frozen array: the same object on every call lets the cache's per-array memos hit.
    if (recalled !== undefined) return recalled;
    const facts = this.readProcess(peer);
    const { status } = facts;
    const selectors = unixSelectors(facts, names);
    // Only facts read under a pidfd are remembered: without one there is no cheap way to re-check the process.
    if (this.memo === undefined || peer.pidfd < 0) return selectors;
    return this.memo.set({ status, exe: facts.exe, exeFile: facts.exeFile, accountsGeneration: names.generation }, selectors);
  }

  /**
   * The fast path for a caller whose selectors are already known (AttestationMemo): reads the same inputs as a full
   * attestation — status, the executable's path and file version — by pid, between two checks that the caller's
   * pidfd is alive. The caller held that pid from connect() until the second check, so every read in between was of
   * the caller (the same reasoning as readProcess's directory handle). Skipped are the /proc handle, the hash and
   * the name lookups. Undefined sends the call down the full path, which names any failure precisely; a caller that
   * died during the reads fails closed here. A caller whose main thread has exited is read from the same live thread
   * as on the full path (liveThread), so that its inputs, and with them the memo key, are the ones remembered.
   */
  private recall(peer: PeerInfo, accountsGeneration: number): readonly Selector[] | undefined {
    const { pid, pidfd } = peer;
    if (this.memo === undefined || this.memo.size === 0 || pidfd < 0) return undefined;
    if (!this.alive(pidfd)) throw outlived(`process ${pid} has exited`);
    let status: ProcStatus;
    let exe: string | undefined;
    let exeFile: FileIdentity;
    try {
      let task: string;
      ({ status, task } = this.liveThread(`/proc/${pid}`, pid));
      exe = this.hooks.readLink(`/proc/${pid}/${task}exe`);
      exeFile = this.hooks.stat(`/proc/${pid}/${task}exe`);
    } catch {
      return undefined;
    }
    if (status.effectiveUid !== peer.uid || status.effectiveGid !== peer.gid) return undefined;
    const selectors = this.memo.get({ status, exe, exeFile, accountsGeneration });
    if (selectors === undefined) return undefined;
    // Still the caller after the reads: otherwise they may have been of a process that got its pid since.
    if (!this.alive(pidfd)) throw outlived(`process ${pid} has exited`);
    return selectors;
  }

  private readProcess(peer: PeerInfo): ProcessFacts {
    const { pid, pidfd } = peer;
    const pinned = pidfd >= 0;
    if (pinned && !this.alive(pidfd)) throw outlived(`process ${pid} has exited`);
    let dirfd: number;
    try {
      dirfd = this.hooks.openDirectory(`/proc/${pid}`);
    } catch (err) {
      // The pidfd still alive means the process is there and /proc hides it from the agent (hidepid=: ENOENT when
      // invisible, EPERM when inaccessible). Not an exited caller, so no reason to close its connection.
      if (pinned && this.alive(pidfd)) {
        throw failed(
          `cannot open /proc/${pid} (${errorCode(err)}) though the process runs: /proc hides it from the agent (mounted with ` +
            'hidepid=?); run the agent as root or with CAP_SYS_PTRACE',
          err,
        );
      }
      const gone = `process ${pid} is gone (${errorCode(err)})`;
      throw errorCode(err) === 'ENOENT' || errorCode(err) === 'ESRCH' ? outlived(gone, err) : failed(gone, err);
    }
    try {
      // Alive after the open: the pid was not recycled since accept, so the directory is the caller's.
      if (pinned && !this.alive(pidfd)) throw outlived(`process ${pid} has exited`);
      const dir = `/proc/self/fd/${dirfd}`;
      const startBefore = pinned ? undefined : this.startTime(dir, pid);
      const { status, task } = this.liveThread(dir, pid);
      // SO_PEERCRED recorded the effective ids at connect(); if they differ now the process changed identity since.
      // Checked before the hash, which is charged to the uid: a process that exec'd a setuid binary must not spend
      // (or fill the cache of) the budget of the uid it became.
      if (status.effectiveUid !== peer.uid || status.effectiveGid !== peer.gid) {
        throw outlived(`process ${pid} changed its uid/gid since it connected`);
      }
      const exe = this.readExeLink(dir, task, pid, status.effectiveUid);
      const { file: exeFile, sha256, unhashed, openError } = this.read(pid, `${task}exe`, (): HashedFile =>
        this.hashes === undefined
          ? { file: this.hooks.stat(`${dir}/${task}exe`), sha256: undefined }
          : this.hashes.hashFile(`${dir}/${task}exe`, this.accountOf(status.effectiveUid)),
      );
      if (unhashed !== undefined) this.warnUnhashed(exe, unhashed, openError);
      // Still the same process after the reads: otherwise some of what we read may be another process's.
      if (pinned ? !this.alive(pidfd) : this.startTime(dir, pid) !== startBefore) throw outlived(`process ${pid} has exited`);
      return { status, exe, exeFile, sha256 };
    } finally {
      this.hooks.closeFile(dirfd);
    }
  }

  /**
   * The status to attest the process by and where under /proc/<pid> its executable is read (`task`: '' or
   * 'task/<tid>/'). Normally the thread-group leader's own files. When the leader is a zombie while other threads
   * live on (the main thread called pthread_exit(), as some runtimes do), /proc/<pid>/status describes the exited
   * thread and /proc/<pid>/exe fails with ENOENT, so the live thread with the lowest tid stands in for the process:
   * its status (each thread has its own ids; they are checked against SO_PEERCRED as the leader's would be) and the
   * executable all threads share. Read through the same pinned directory: /proc/<pid>/task lists only this thread
   * group's threads, so a tid recycled by another process never shows up in it. (recall() passes /proc/<pid> itself,
   * between two pidfd checks, which make the pid the caller's for every read in between.)
   */
  private liveThread(dir: string, pid: number): { status: ProcStatus; task: string } {
    const leader = this.read(pid, 'status', () => parseProcStatus(this.hooks.readText(`${dir}/status`)));
    if (leader.state === 'X') throw outlived(`process ${pid} has exited`);
    if (leader.state !== 'Z') return { status: leader, task: '' };
    const tids = this.read(pid, 'task', () => this.hooks.readDirectory(`${dir}/task`))
      .filter((name) => /^\d+$/.test(name) && Number(name) !== pid)
      .map(Number)
      .sort((a, b) => a - b);
    for (const tid of tids) {
      let status: ProcStatus;
      try {
        status = parseProcStatus(this.hooks.readText(`${dir}/task/${tid}/status`));
      } catch (err) {
        // That thread exited since the listing; another may still live.
        if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ESRCH') continue;
        throw failed(`cannot read /proc/${pid}/task/${tid}/status (${errorCode(err)})`, err);
      }
      if (status.state !== 'Z' && status.state !== 'X') return { status, task: `task/${tid}/` };
    }
    throw outlived(`process ${pid} has exited`);
  }

  /**
   * The target of /proc/<pid>/exe. The kernel shows it only to a process that may ptrace the caller (one of another
   * uid, or one that is not dumpable, needs CAP_SYS_PTRACE): an agent run as a plain user fails such callers with
   * EACCES, and the failure names the remedy, as the hidepid one does, in the caller's error and once in the log.
   */
  private readExeLink(dir: string, task: string, pid: number, uid: number): string | undefined {
    try {
      return this.hooks.readLink(`${dir}/${task}exe`);
    } catch (err) {
      if (err instanceof MeshidError) throw err;
      if (errorCode(err) !== 'EACCES') throw failed(`cannot read /proc/${pid}/${task}exe (${errorCode(err)})`, err);
      const agentUid = process.geteuid?.();
      const whose = uid === agentUid ? `process ${pid}, which is not dumpable (a setuid or file-capability program, say)` : `the processes of uid ${uid}`;
      const reason = `cannot read /proc/${pid}/${task}exe (EACCES): the agent (uid ${agentUid}) may not inspect ${whose}; run meshid-agent as root or with CAP_SYS_PTRACE`;
      if (!this.warnedNoPtrace) {
        this.warnedNoPtrace = true;
        this.log?.warn({ pid, uid }, `workload attestation ${reason} (logged once; every such caller is refused)`);
      }
      throw failed(reason, err);
    }
  }

  /** Once per executable path and reason (bounded): a per-RPC warning would flood the log. */
  private warnUnhashed(exe = '(a path that is not UTF-8)', why: 'too-large' | 'unreadable', openError?: string): void {
    const key = `${why}\0${exe}`;
    if (this.warnedUnhashed.has(key) || this.warnedUnhashed.size >= MAX_WARNED) return;
    this.warnedUnhashed.add(key);
    if (why === 'too-large') {
      this.log?.warn({ exe }, 'workload executable is over the hashing size limit: it gets no sha256 selector');
      return;
    }
    // Root reads any file by its mode, so a refusal to root comes from a security module: "run as root" would send
    // the operator nowhere.
    const advice =
      process.geteuid?.() === 0
        ? 'a security module (AppArmor, SELinux) denies the agent reading it: allow the agent to read it there'
        : 'its mode or a security module denies the agent (not root) reading it: give the agent CAP_DAC_READ_SEARCH, or run it as root';
    this.log?.warn({ exe, error: openError }, `workload executable cannot be read by the agent: it gets no sha256 selector; ${advice}`);
  }

  private alive(pidfd: number): boolean {
    try {
      return this.hooks.pidfdAlive(pidfd);
    } catch (err) {
      throw failed(`cannot check the caller's pidfd (${errorCode(err)})`, err);
    }
  }

  private startTime(dir: string, pid: number): string {
    return this.read(pid, 'stat', () => parseStartTime(this.hooks.readText(`${dir}/stat`)));
  }

  /** Runs one read; any failure (the process exited: ESRCH/ENOENT, or a parse error) fails the attestation. */
  private read<T>(pid: number, what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof MeshidError) throw err;
      throw failed(`cannot read /proc/${pid}/${what} (${errorCode(err)})`, err);
    }
  }
}

/** The selectors for a process, in a fixed order (uid, user, gid, group, supplementary ids and names, path, sha256). */
function unixSelectors(facts: ProcessFacts, names: AccountNames): Selector[] {
  const { status } = facts;
  const selectors: string[] = [`uid:${status.effectiveUid}`];
  const user = names.userName(status.effectiveUid);
  if (user !== undefined) selectors.push(`user:${user}`);
  selectors.push(`gid:${status.effectiveGid}`);
  const group = names.groupName(status.effectiveGid);
  if (group !== undefined) selectors.push(`group:${group}`);
  for (const gid of status.groups) selectors.push(`supplementary_gid:${gid}`);
  for (const gid of status.groups) {
    const name = names.groupName(gid);
    if (name !== undefined) selectors.push(`supplementary_group:${name}`);
  }
  const path = pathSelector(facts.exe);
  if (path !== undefined) selectors.push(`path:${path}`);
  if (facts.sha256 !== undefined) selectors.push(`sha256:${facts.sha256}`);
  return selectors.map((value) => ({ type: SELECTOR_TYPE, value }));
}

/** The executable's path, unless the kernel marks it deleted or it is not UTF-8. */
function pathSelector(exe: string | undefined): string | undefined {
  return exe === undefined || exe.endsWith(DELETED_SUFFIX) ? undefined : exe;
}

function errorCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return typeof e?.code === 'string' ? e.code : e instanceof Error ? e.message : String(err);
}
