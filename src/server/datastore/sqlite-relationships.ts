import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../../common/errors.js';
import type { BundleWriteGuard, StoredBundle, StoredRelationship } from './datastore.js';
import { requireText, requireTime } from './record-guards.js';
import { checkReplaces, storeBundle } from './sqlite-bundles.js';
import { entriesFederatingWith, federatingSummary } from './sqlite-entries.js';
import { relationshipColumns, relationshipFromRow, type RelationshipRow } from './sqlite-rows.js';
import type { SqliteScope } from './sqlite-scope.js';

/**
 * Federation relationships made through the admin API, in the SQLite datastore: each may come with a seed bundle,
 * stored in the same transaction, and one whose bundle was never fetched is deleted only once no entry federates with
 * its trust domain. Each function runs inside the datastore's read or write.
 */

export function createFederationRelationship(tx: SqliteScope, relationship: StoredRelationship, seed?: { bundle: StoredBundle } & BundleWriteGuard): void {
  const r = checkedRelationship(relationship);
  if (tx.s.relationshipById.get(r.trustDomain) !== undefined) throw alreadyExists(`a federation relationship with ${r.trustDomain} already exists`);
  if (seed !== undefined) {
    if (seed.bundle.trustDomain !== r.trustDomain) throw invalidArgument(`the seed bundle is for ${seed.bundle.trustDomain}, not ${r.trustDomain}`);
    checkReplaces(tx, r.trustDomain, seed.replaces);
    storeBundle(tx, seed.bundle, false);
  }
  tx.s.insertRelationship.run(...relationshipColumns(r));
}

export function updateFederationRelationship(tx: SqliteScope, relationship: StoredRelationship, seed?: { bundle: StoredBundle } & BundleWriteGuard): StoredRelationship {
  const r = checkedRelationship(relationship);
  const row = tx.s.relationshipById.get(r.trustDomain) as RelationshipRow | undefined;
  if (row === undefined) throw notFound(`no federation relationship with ${r.trustDomain}`);
  if (seed !== undefined) {
    if (seed.bundle.trustDomain !== r.trustDomain) throw invalidArgument(`the seed bundle is for ${seed.bundle.trustDomain}, not ${r.trustDomain}`);
    checkReplaces(tx, r.trustDomain, seed.replaces);
    storeBundle(tx, seed.bundle, false);
  }
  const updated = { ...r, createdAt: row.created_at };
  tx.s.updateRelationship.run(updated.bundleEndpointUrl, updated.profile, updated.endpointSpiffeId ?? '', updated.updatedAt, updated.trustDomain);
  return updated;
}

export function deleteFederationRelationship(tx: SqliteScope, trustDomain: string): StoredRelationship {
  const row = tx.s.relationshipById.get(trustDomain) as RelationshipRow | undefined;
  if (row === undefined) throw notFound(`no federation relationship with ${trustDomain}`);
  // Entries may name a trust domain whose first poll has not stored a bundle yet; without the relationship
  // they would federate with nothing (as deleteBundle refuses for the bundle).
  if (tx.s.bundleById.get(trustDomain) === undefined) {
    const federating = entriesFederatingWith(tx, trustDomain);
    if (federating.length > 0) {
      throw failedPrecondition(
        `${federatingSummary(federating, trustDomain)}, whose bundle was never fetched: take it out of their federates_with first, ` +
          'or set its bundle (bundle set)',
      );
    }
  }
  tx.s.deleteRelationship.run(trustDomain);
  return relationshipFromRow(row);
}

export function listFederationRelationships(tx: SqliteScope): StoredRelationship[] {
  return (tx.s.allRelationships.all() as RelationshipRow[]).map(relationshipFromRow);
}

/** The API validated it (relationship.ts); this guards the storage contract only. */
function checkedRelationship(r: StoredRelationship): StoredRelationship {
  requireText('relationship trustDomain', r.trustDomain);
  requireText('relationship bundleEndpointUrl', r.bundleEndpointUrl);
  requireTime('relationship createdAt', r.createdAt);
  requireTime('relationship updatedAt', r.updatedAt);
  if (r.profile !== 'https_spiffe' && r.profile !== 'https_web') throw invalidArgument(`relationship ${r.trustDomain}: profile "${String(r.profile)}" is unknown`);
  if ((r.profile === 'https_spiffe') !== (r.endpointSpiffeId !== undefined)) {
    throw invalidArgument(`relationship ${r.trustDomain}: an endpoint SPIFFE ID goes with https_spiffe, and only with it`);
  }
  return r;
}
