import fs from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, removeStaleTempFiles, writeFileAtomic } from '../../common/atomic-file.js';
import { failedPrecondition, isMeshidError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { acquireDataDirLock } from './data-dir-lock.js';
import { decodeIdentity, decodeState, encodeIdentity, encodeState, type StoredIdentity, type StoredState } from './stored-state.js';

const IDENTITY_FILE = 'agent-svid.json';
const STATE_FILE = 'state.json';
const LOCK_FILE = 'agent.lock';

/**
 * The agent's data dir (0700): `agent-svid.json` (its own SVID and key), `state.json` (entries, bundles, workload
 * SVIDs and keys), `agent.lock`. Both documents are 0600 and replaced atomically (write a temp file, fsync, rename,
 * fsync the dir: writeFileAtomic), so a kill -9 at any moment leaves each one either old or new, never torn; they
 * are independent, so no write order between them matters. The identity is written at once after every attestation
 * and renewal; the state is written coalesced (StateWriter) — losing the last few hundred ms of it costs only a
 * re-signing after restart, never a wrong answer, because restored SVIDs are re-checked (decodeState).
 */
export class AgentStore {
  private constructor(
    readonly dataDir: string,
    private readonly log: Logger,
    private readonly unlock: () => void,
  ) {}

  /** Creates the data dir if needed (0700), takes its lock and removes temp files an earlier crash left. */
  static open(dataDir: string, log: Logger): AgentStore {
    if (fs.existsSync(dataDir) && !fs.statSync(dataDir).isDirectory()) throw failedPrecondition(`data dir ${dataDir} is not a directory`);
    ensurePrivateDir(dataDir);
    const unlock = acquireDataDirLock(path.join(dataDir, LOCK_FILE));
    removeStaleTempFiles(dataDir);
    return new AgentStore(dataDir, log, unlock);
  }

  /** The stored agent identity, or undefined when the agent never attested. A damaged file stops start-up. */
  loadIdentity(): StoredIdentity | undefined {
    const text = this.read(IDENTITY_FILE);
    if (text === undefined) return undefined;
    try {
      return decodeIdentity(text);
    } catch (err) {
      throw failedPrecondition(
        `${path.join(this.dataDir, IDENTITY_FILE)} cannot be used (${(err as Error).message}): move it away and attest again with a new --join-token`,
        err,
      );
    }
  }

  saveIdentity(identity: StoredIdentity): void {
    writeFileAtomic(path.join(this.dataDir, IDENTITY_FILE), encodeIdentity(identity), 0o600);
  }

  /**
   * The stored state with what is still servable at `now`, or undefined when there is none. A damaged state file is
   * moved aside (kept for inspection) and the agent starts empty: the server has everything it held.
   */
  loadState(now: number): StoredState | undefined {
    const file = path.join(this.dataDir, STATE_FILE);
    const text = this.read(STATE_FILE);
    if (text === undefined) return undefined;
    try {
      const { state, dropped } = decodeState(text, now);
      for (const d of dropped) this.log.info({ entryId: d.entryId, reason: d.reason }, 'a stored X509-SVID is not restored');
      return state;
    } catch (err) {
      if (!isMeshidError(err)) throw err;
      const aside = `${file}.unreadable`;
      fs.renameSync(file, aside);
      this.log.error({ err, movedTo: aside }, 'the stored state cannot be read; starting without it');
      return undefined;
    }
  }

  saveState(state: StoredState): void {
    writeFileAtomic(path.join(this.dataDir, STATE_FILE), encodeState(state), 0o600);
  }

  /** Releases the data dir lock. */
  close(): void {
    this.unlock();
  }

  private read(name: string): string | undefined {
    try {
      return fs.readFileSync(path.join(this.dataDir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}
