import { sameFile, type FileIdentity, type ProcHooks } from './proc-hooks.js';

/**
 * User and group names for the unix `user:`, `group:` and `supplementary_group:` selectors, from the agent host's
 * /etc/passwd and /etc/group (passwd(5), group(5)). Only the files are read: names served by other NSS sources (LDAP,
 * systemd-homed) are not seen, and an id without a name simply yields no name selector. Each file is parsed again
 * only when its identity (inode, mtime, size) changes.
 */
export class UnixAccounts {
  private readonly users: CachedIdFile;
  private readonly groups: CachedIdFile;
  private generation = 0;
  private view: AccountNames | undefined;

  constructor(hooks: ProcHooks, files: { passwd?: string; group?: string } = {}) {
    this.users = new CachedIdFile(hooks, files.passwd ?? '/etc/passwd');
    this.groups = new CachedIdFile(hooks, files.group ?? '/etc/group');
  }

  userName(uid: number): string | undefined {
    return this.users.names().get(uid);
  }

  groupName(gid: number): string | undefined {
    return this.groups.names().get(gid);
  }

  /**
   * Both files as they are now (one stat each, re-parsed only when changed), for several lookups in a row. The
   * `generation` changes whenever either file's content may have changed, so results derived from the names can be
   * kept until it does.
   */
  current(): AccountNames {
    const users = this.users.names();
    const groups = this.groups.names();
    if (this.view === undefined || this.view.users !== users || this.view.groups !== groups) {
      this.view = new AccountNames(++this.generation, users, groups);
    }
    return this.view;
  }
}

/** User and group names from one reading of /etc/passwd and /etc/group; see UnixAccounts.current(). */
export class AccountNames {
  constructor(
    readonly generation: number,
    readonly users: ReadonlyMap<number, string>,
    readonly groups: ReadonlyMap<number, string>,
  ) {}

  userName(uid: number): string | undefined {
    return this.users.get(uid);
  }

  groupName(gid: number): string | undefined {
    return this.groups.get(gid);
  }
}

/**
 * Parses passwd or group content: "name:password:id:..." lines, the id in the third field in both formats. Blank
 * lines, comments, NIS "+"/"-" lines and malformed lines are skipped; for a duplicated id the first line wins, as in
 * getpwuid(3)'s scan of the file.
 */
export function parseIdFile(text: string): Map<number, string> {
  const names = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const fields = line.split(':');
    const name = fields[0];
    const id = fields[2];
    if (fields.length < 3 || name === undefined || name === '' || id === undefined || !/^\d+$/.test(id)) continue;
    const n = Number(id);
    if (!names.has(n)) names.set(n, name);
  }
  return names;
}

class CachedIdFile {
  private identity: FileIdentity | undefined;
  private cached = new Map<number, string>();

  constructor(
    private readonly hooks: ProcHooks,
    private readonly path: string,
  ) {}

  names(): Map<number, string> {
    let current: FileIdentity | undefined;
    try {
      current = this.hooks.stat(this.path);
    } catch (err) {
      // No file at all means no names (minimal containers); any other failure must not be read as "no name".
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // A new (empty) map only when the file has just gone: the map's identity tells callers whether names changed.
      if (this.identity !== undefined || this.cached.size > 0) this.cached = new Map();
      this.identity = undefined;
      return this.cached;
    }
    if (this.identity === undefined || !sameFile(this.identity, current)) {
      this.cached = parseIdFile(this.hooks.readText(this.path));
      this.identity = current;
    }
    return this.cached;
  }
}
