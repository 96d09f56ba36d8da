import { aborted, failedPrecondition, invalidArgument, notFound } from '../../common/errors.js';
import type { BundleDeleteMode, BundleWriteGuard, StoredBundle } from './datastore.js';
import { requireText, requireTime } from './record-guards.js';
import { dissociate, entriesFederatingWith, federatingSummary } from './sqlite-entries.js';
import { bundleContentColumns, bundleFromRow, type BundleRow } from './sqlite-rows.js';
import type { SqliteScope } from './sqlite-scope.js';

/**
 * Trust bundles in the SQLite datastore, this trust domain's and federated ones: a stored bundle is only ever replaced
 * by a higher sequence (Bundle §4), a writer holding an older read is refused (BundleWriteGuard), and a bundle entries
 * federate with is deleted only by taking it out of them. Each function runs inside the datastore's read or write.
 */

export function getBundle(tx: SqliteScope, trustDomain: string): StoredBundle | undefined {
  const row = tx.s.bundleById.get(trustDomain) as BundleRow | undefined;
  return row === undefined ? undefined : bundleFromRow(row);
}

export function setBundle(tx: SqliteScope, bundle: StoredBundle, options?: BundleWriteGuard & { relationship?: boolean }): void {
  if (options?.relationship === true && tx.s.relationshipById.get(bundle.trustDomain) === undefined) {
    throw notFound(`no federation relationship with ${bundle.trustDomain} (deleted meanwhile)`);
  }
  if (options !== undefined) checkReplaces(tx, bundle.trustDomain, options.replaces);
  storeBundle(tx, bundle, false);
}

export function listBundles(tx: SqliteScope): StoredBundle[] {
  return (tx.s.allBundles.all() as BundleRow[]).map(bundleFromRow);
}

export function deleteBundle(tx: SqliteScope, trustDomain: string, mode: BundleDeleteMode = 'restrict'): number {
  if (mode !== 'restrict' && mode !== 'dissociate') throw invalidArgument(`bundle delete mode "${String(mode)}" must be restrict or dissociate`);
  if (tx.s.bundleById.get(trustDomain) === undefined) throw notFound(`no bundle stored for trust domain ${trustDomain}`);
  const federating = entriesFederatingWith(tx, trustDomain);
  if (federating.length > 0 && mode === 'restrict') {
    throw failedPrecondition(
      `${federatingSummary(federating, trustDomain)}: take it out of their federates_with first, or delete in dissociate mode ` +
        '(bundle delete --mode dissociate), which does that',
    );
  }
  for (const id of federating) dissociate(tx, id, trustDomain);
  tx.s.deleteBundle.run(trustDomain);
  tx.bump('bundle');
  return federating.length;
}

/** BundleWriteGuard: a writer that read the bundle before a slow step (a poll's fetch) undoes nothing made meanwhile. */
export function checkReplaces(tx: SqliteScope, trustDomain: string, replaces: number | null): void {
  const stored = tx.s.bundleContent.get(trustDomain) as { sequence: number } | undefined;
  if ((stored?.sequence ?? null) !== replaces) {
    throw aborted(`bundle ${trustDomain} changed meanwhile (${stored === undefined ? 'deleted' : `now sequence ${stored.sequence}`}, expected ${replaces ?? 'none'})`);
  }
}

/** `sameSequenceMeansUnchanged`: the CA manager re-sends the stored bundle when only the journal changed. */
export function storeBundle(tx: SqliteScope, b: StoredBundle, sameSequenceMeansUnchanged: boolean): void {
  requireText('bundle trustDomain', b.trustDomain);
  requireTime('bundle sequence', b.sequence);
  requireTime('bundle updatedAt', b.updatedAt);
  if (!Array.isArray(b.x509Authorities) || !b.x509Authorities.every((d: unknown) => d instanceof Uint8Array)) {
    throw invalidArgument(`bundle ${b.trustDomain}: X.509 authorities must be DER buffers`);
  }
  const content = bundleContentColumns(b);
  const stored = tx.s.bundleContent.get(b.trustDomain) as { x509_authorities: string; jwt_authorities: string; sequence: number } | undefined;
  if (stored !== undefined && b.sequence <= stored.sequence) {
    const unchanged = stored.x509_authorities === content.x509 && stored.jwt_authorities === content.jwt;
    if (sameSequenceMeansUnchanged && b.sequence === stored.sequence && unchanged) return;
    throw failedPrecondition(
      `bundle ${b.trustDomain}: sequence ${b.sequence} must be greater than the stored sequence ${stored.sequence} (Bundle §4)`,
    );
  }
  tx.s.upsertBundle.run(b.trustDomain, content.x509, content.jwt, b.sequence, tx.bump('bundle'), b.updatedAt);
}
