import type { KeyObject } from 'node:crypto';
import { isMeshidError, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { KeyStore } from './key-store.js';

/** Errors of a journal commit that certainly wrote nothing. */
const ROLLED_BACK: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['resource_exhausted', 'failed_precondition', 'not_found', 'already_exists', 'aborted', 'invalid_argument']);

/**
 * The key files a CA change (ca-manager.ts) wrote before its journal commit, which no row names yet. A key file is
 * always written before the row that names it; a change that fails before its commit takes its keys back, so that a
 * rotation retried every minute against a full disk does not add more to it.
 */
export class UncommittedKeys {
  private readonly written = new Set<string>();

  constructor(
    private readonly keys: KeyStore,
    private readonly log: Logger,
  ) {}

  /** Writes a new authority's key, taken back should its change not commit. */
  write(keyId: string, key: KeyObject): void {
    this.written.add(keyId);
    this.keys.write(keyId, key);
  }

  /** Runs the journal commit of the change that wrote the keys: once it has landed they are its own. */
  async commit(commit: () => Promise<void>): Promise<void> {
    try {
      await commit();
    } catch (err) {
      // Only a commit known not to have happened (refused before writing, or the disk full) gives its keys back.
      // After an I/O error the commit may still be recovered at the next start, which then needs them; if it is
      // not, the start's sweep removes them.
      if (!isMeshidError(err) || !ROLLED_BACK.has(err.code)) this.written.clear();
      throw err;
    }
    this.written.clear();
  }

  /** At the end of every change, committed or not: deletes the keys of one that failed before its commit. */
  takeBack(): void {
    for (const keyId of this.written) {
      try {
        this.keys.delete(keyId);
      } catch (err) {
        this.log.warn({ err, keyId }, 'cannot remove the key of an uncommitted CA change; the next start removes it');
      }
    }
    this.written.clear();
  }
}
