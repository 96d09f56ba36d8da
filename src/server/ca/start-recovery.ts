import { failedPrecondition } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { CaJournalStore, OwnBundleRecord, RevokedJwtKeyRecord, RevokedRootRecord } from './ca-journal.js';
import type { FirstSetupMarker } from './first-setup-marker.js';
import { keysWithoutJournal, loadJournalAuthorities } from './journal-authorities.js';
import type { KeyStore } from './key-store.js';
import type { LoadedAuthority } from './loaded-authority.js';

/** What a start found in the CA journal and key directory, once they agree. */
export interface RecoveredCa {
  /** Every authority still of use, by ID, its key loaded and matched. */
  readonly live: Map<string, LoadedAuthority>;
  readonly bundle: OwnBundleRecord | undefined;
  readonly revokedRoots: RevokedRootRecord[];
  readonly revokedJwtKeys: RevokedJwtKeyRecord[];
  /** Whether this is a data dir's first CA setup (an empty journal), the marker of which is now on disk. */
  readonly firstSetup: boolean;
}

/**
 * Loads the CA journal and keys at a start (ca-manager.ts), refusing to start on any inconsistency (missing key, key
 * not matching its certificate), and brings them back into agreement after a crash: an interrupted first setup is
 * started over, authorities that expired while the server was down leave the journal, and key files no row names
 * (written before a commit that never landed) are removed.
 */
export async function recoverAtStart(
  store: CaJournalStore,
  keys: KeyStore,
  firstSetup: FirstSetupMarker,
  trustDomain: string,
  log: Logger,
  now: number,
): Promise<RecoveredCa> {
  const records = await store.listCaRecords();
  const keyFiles = keys.list();
  if (records.length === 0) {
    if (keyFiles.length > 0 && !firstSetup.exists()) {
      // An interrupted first start leaves its marker beside its keys; without one, the keys are a trust domain's whose
      // datastore lost its content (datastore.sqlite3 copied without its -wal file): sweeping them as orphans would
      // delete its root key and silently re-root it.
      throw failedPrecondition(
        `${keysWithoutJournal(keys.dir, keyFiles)}. Restore the datastore that goes with these keys (README, "Backup and restore"); ` +
          `only if this data dir never served remove ${keys.dir} to create a new trust domain`,
      );
    }
    if (keyFiles.length > 0) log.warn({ keys: keyFiles.length }, 'a first CA setup was interrupted before its commit; starting it over');
    // Durable before the first key: from here until the first commit, key files beside an empty journal are ours.
    firstSetup.create();
  } else if (firstSetup.exists()) {
    // The first commit landed but the process died before removing the marker.
    firstSetup.remove();
  }
  // Retired authorities that expired while the server was down: nothing can use them, and rotation only ever sees
  // loaded ones, so they go below (journal first; a crash before the key deletion leaves an orphan the sweep takes).
  const { live, expired } = loadJournalAuthorities(records, keys, trustDomain, now, {
    keyMismatch: 'restore the matching key from a backup',
    otherTrustDomain: 'use another --data-dir',
  });
  // Only once every live authority's key has loaded and matched: a start that is refused (a datastore restored from
  // an older backup beside newer keys, a key missing) deletes nothing, so restoring the right files still works.
  const storedBundle = await store.getBundle(trustDomain);
  if (expired.length > 0 && storedBundle !== undefined) {
    // The bundle is passed unchanged (same sequence); the next rotation rebuilds it from the live authorities.
    await store.commitCaChange({ remove: expired.map((r) => r.id) }, storedBundle);
    for (const r of expired) keys.delete(r.keyId);
    log.info({ authorities: expired.map((r) => r.id) }, 'removed authorities that expired while the server was down');
  }
  const referenced = new Set(records.map((r) => r.keyId));
  for (const keyId of keyFiles) {
    if (!referenced.has(keyId)) {
      // Written before a crash that prevented its journal row from committing: never used, safe to drop.
      log.warn({ keyId }, 'removing CA key file not referenced by the CA journal (left by an interrupted write)');
      keys.delete(keyId);
    }
  }
  return { live, bundle: storedBundle, revokedRoots: await store.listRevokedRoots(), revokedJwtKeys: await store.listRevokedJwtKeys(), firstSetup: records.length === 0 };
}
