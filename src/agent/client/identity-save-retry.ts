import type { Clock, TimerHandle } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import type { AgentStore } from '../storage/agent-store.js';
import type { StoredIdentity } from '../storage/stored-state.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';

/** Saving an identity the data dir refused (a full disk) again: 1 s, 2 s, 4 s … 60 s. */
const SAVE_RETRY: BackoffPolicy = Object.freeze({ initialMs: 1000, maxMs: 60_000, multiplier: 2 });

/**
 * Saving the agent identity once the join token is spent. The server knows the agent by the identity's key, so one
 * the data dir refuses (a full disk) is not thrown away: it is kept here and saved again with backoff, and tried a
 * last time when the agent stops (see AgentIdentity's class comment).
 */
export class IdentitySaveRetry {
  /** The identity in use when the data dir refused it: saved again by `saveTimer`, and at stop(). */
  unsaved: StoredIdentity | undefined;
  private saveTimer: TimerHandle | undefined;
  private saveFailures = 0;

  constructor(
    private readonly o: { store: AgentStore; clock: Clock; log: Logger },
    private readonly random: () => number,
    /** Whether the agent identity has stopped: a retry due then is left to stop(). */
    private readonly stopped: () => boolean,
  ) {}

  /** Ends the retries; the identity the data dir refused so far gets one last try (saveLast). */
  stop(): void {
    this.saveTimer?.cancel();
    this.saveTimer = undefined;
    this.saveLast();
  }

  /** The last try to save an identity the data dir refused so far; failing it, says what the next start needs. */
  saveLast(): void {
    const unsaved = this.unsaved;
    if (unsaved === undefined) return;
    try {
      this.o.store.saveIdentity(unsaved);
      this.unsaved = undefined;
      this.o.log.info({ agent: unsaved.spiffeId }, 'the agent identity is saved');
    } catch (err) {
      this.o.log.error(
        { agent: unsaved.spiffeId },
        `${(err as Error).message}. It was never saved: the agent's next start needs a new join token (meshid-server token generate), and ${unsaved.spiffeId} can be evicted`,
      );
    }
  }

  /**
   * Saves `identity`; when the data dir refuses it (a full disk), keeps it as `unsaved` and tries again with backoff
   * (SAVE_RETRY), logging each failure at error level. Never throws. The message names the data dir and the cause;
   * never the key or the token.
   */
  persist(identity: StoredIdentity): void {
    this.saveTimer?.cancel();
    this.saveTimer = undefined;
    try {
      this.o.store.saveIdentity(identity);
    } catch (err) {
      this.unsaved = identity;
      const wait = backoffDelay(this.saveFailures++, SAVE_RETRY, this.random);
      this.o.log.error(
        { agent: identity.spiffeId, retryInMs: wait },
        `${(err as Error).message}; will retry. The join token is spent: should the agent stop before its identity is saved, it needs a new one`,
      );
      this.saveTimer = this.o.clock.setTimer(() => {
        this.saveTimer = undefined;
        if (this.unsaved !== undefined && !this.stopped()) this.persist(this.unsaved);
      }, wait);
      return;
    }
    if (this.unsaved !== undefined) this.o.log.info({ agent: identity.spiffeId, failures: this.saveFailures }, 'the agent identity is saved');
    this.unsaved = undefined;
    this.saveFailures = 0;
  }
}
