import { sameFile, systemProcHooks, type FileIdentity, type ProcHooks } from './proc-hooks.js';
import { parseIdFile } from './unix-accounts.js';

/** One line of /etc/subuid: `count` uids from `start`, which the user `owner` may run processes as. */
interface SubordinateRange {
  readonly start: number;
  readonly end: number;
  readonly owner: string;
}

/**
 * Whose budget a uid's use of the agent socket is: the uid's own, or, for a subordinate uid (subuid(5)), its owner's.
 * useradd gives every new user 65,536 subordinate uids in /etc/subuid by default, and newuidmap (rootless podman,
 * `unshare --map-auto`) lets that user run processes as any of them, each a uid of its own to SO_PEERCRED: budgets
 * kept per uid alone (connections, calls, hashing, decoding turns) were then 65,537 budgets for one unprivileged user,
 * enough to exhaust the agent's descriptors, memory or event loop for every other workload on the host. Identity is
 * not changed by this: selectors still name the uid the kernel reports; only what the per-uid bounds count is.
 *
 * Only the files are read (as UnixAccounts reads /etc/passwd), again only when one changes. An owner given by name
 * that /etc/passwd does not know, or a range no line owns, is charged to the range's first uid, so a range is one
 * budget whatever its owner's name resolves to. A uid in several ranges counts for the first line's owner.
 */
export class SubordinateIds {
  private identity: { subuid: FileIdentity | undefined; passwd: FileIdentity | undefined } | undefined;
  private ranges: readonly SubordinateRange[] = [];
  private owners = new Map<string, number>();

  constructor(
    private readonly hooks: Pick<ProcHooks, 'stat' | 'readText'> = systemProcHooks,
    private readonly files: { subuid?: string; passwd?: string } = {},
  ) {}

  /** The uid whose budget `uid` spends: its owner's for a subordinate uid, else `uid` itself. Bound, to be passed on. */
  readonly accountOf = (uid: number): number => {
    try {
      this.refresh();
    } catch {
      // A file that cannot be read now (its mode, a security module) leaves the ranges as last read: a budget is
      // never a reason to refuse a caller's connection, which a throw here would be.
    }
    for (const range of this.ranges) {
      if (uid < range.start || uid >= range.end) continue;
      return this.owners.get(range.owner) ?? range.start;
    }
    return uid;
  };

  private refresh(): void {
    const subuidPath = this.files.subuid ?? '/etc/subuid';
    const passwdPath = this.files.passwd ?? '/etc/passwd';
    const subuid = this.statIfAny(subuidPath);
    const passwd = this.statIfAny(passwdPath);
    const held = this.identity;
    if (held !== undefined && same(held.subuid, subuid) && same(held.passwd, passwd)) return;
    const ranges = subuid === undefined ? [] : parseSubordinateRanges(this.hooks.readText(subuidPath));
    const byName = new Map<string, number>();
    if (passwd !== undefined) {
      for (const [uid, name] of parseIdFile(this.hooks.readText(passwdPath))) if (!byName.has(name)) byName.set(name, uid);
    }
    // Both read before either is taken: a failed read leaves the last reading whole.
    this.ranges = ranges;
    // subuid(5): the owner is a login name or a numeric uid.
    this.owners = new Map(ranges.map((r) => [r.owner, /^\d+$/.test(r.owner) ? Number(r.owner) : (byName.get(r.owner) ?? r.start)]));
    this.identity = { subuid, passwd };
  }

  /** No file is no ranges (most containers); any other failure keeps what was last read (accountOf). */
  private statIfAny(path: string): FileIdentity | undefined {
    try {
      return this.hooks.stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}

function same(a: FileIdentity | undefined, b: FileIdentity | undefined): boolean {
  return a === undefined || b === undefined ? a === b : sameFile(a, b);
}

/** `owner:start:count` lines (subuid(5)); comments, blank and malformed lines are skipped. */
export function parseSubordinateRanges(text: string): SubordinateRange[] {
  const ranges: SubordinateRange[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(':');
    if (fields.length !== 3 || fields[0] === '' || fields[0]!.startsWith('#')) continue;
    const [owner, start, count] = fields as [string, string, string];
    if (!/^\d{1,10}$/.test(start) || !/^\d{1,10}$/.test(count) || Number(count) === 0) continue;
    ranges.push({ owner, start: Number(start), end: Number(start) + Number(count) });
  }
  return ranges;
}
