import { alreadyExists, invalidArgument, notFound } from '../../common/errors.js';
import type { CaJournalChange, CaRecord, CaRecordFilter, CaState, RevokedJwtKeyRecord, RevokedRootRecord, StoredBundle } from './datastore.js';
import { requireText, requireTime } from './record-guards.js';
import { storeBundle } from './sqlite-bundles.js';
import { caRecordFromRow, revokedJwtKeyFromRow, revokedRootFromRow, type CaRow, type RevokedJwtKeyRow, type RevokedRootRow } from './sqlite-rows.js';
import type { SqliteScope } from './sqlite-scope.js';

/**
 * The CA journal in the SQLite datastore (ca/ca-journal.ts): the authorities' records, the roots and JWT keys `ca revoke` took out,
 * and a CA change committed with the trust domain's bundle in one transaction, so that a crash leaves the journal and
 * the bundle as they were or as the change left them. Each function runs inside the datastore's read or write.
 */

const CA_KINDS = new Set(['root', 'intermediate', 'jwt']);
const CA_STATES = new Set(['prepared', 'active', 'old', 'tainted']);

export function listCaRecords(tx: SqliteScope, filter: CaRecordFilter = {}): CaRecord[] {
  return (tx.s.allCaRecords.all() as CaRow[])
    .map(caRecordFromRow)
    .filter((r) => (filter.kind ?? r.kind) === r.kind && (filter.datacenter ?? r.datacenter) === r.datacenter && (filter.state ?? r.state) === r.state);
}

export function commitCaChange(tx: SqliteScope, change: CaJournalChange, bundle?: StoredBundle): void {
  for (const record of change.add ?? []) insertCaRecord(tx, record);
  for (const { id, state } of change.setState ?? []) changeCaState(tx, id, state);
  for (const id of change.remove ?? []) tx.s.deleteCaRecord.run(id);
  for (const r of change.revoked ?? []) insertRevokedRoot(tx, r);
  for (const k of change.revokedJwtKeys ?? []) insertRevokedJwtKey(tx, k);
  if (bundle !== undefined) storeBundle(tx, bundle, true);
}

export function listRevokedRoots(tx: SqliteScope): RevokedRootRecord[] {
  return (tx.s.allRevokedRoots.all() as RevokedRootRow[]).map(revokedRootFromRow);
}

export function listRevokedJwtKeys(tx: SqliteScope): RevokedJwtKeyRecord[] {
  return (tx.s.allRevokedJwtKeys.all() as RevokedJwtKeyRow[]).map(revokedJwtKeyFromRow);
}

export function insertCaRecord(tx: SqliteScope, r: CaRecord): void {
  requireText('CA record id', r.id);
  requireText('CA record keyId', r.keyId);
  if (!CA_KINDS.has(r.kind)) throw invalidArgument(`CA record ${r.id}: kind "${r.kind}" must be root, intermediate or jwt`);
  if (!CA_STATES.has(r.state)) throw invalidArgument(`CA record ${r.id}: state "${r.state}" must be prepared, active, old or tainted`);
  for (const t of ['notBefore', 'notAfter', 'createdAt', 'updatedAt'] as const) requireTime(`CA record ${t}`, r[t]);
  if (tx.s.caRecordExists.get(r.id) !== undefined) throw alreadyExists(`CA journal record ${r.id} already exists`);
  tx.s.insertCaRecord.run(
    r.id, r.kind, r.datacenter ?? '', r.state, r.certDer ?? null, r.publicKeyPem ?? null, r.keyId,
    r.notBefore, r.notAfter, r.createdAt, r.updatedAt,
    r.upstreamChainDer === undefined ? null : Buffer.concat(r.upstreamChainDer),
    r.upstreamAnchorsDer === undefined ? null : Buffer.concat(r.upstreamAnchorsDer),
    r.fromUpstreamCa === undefined ? null : r.fromUpstreamCa ? 1 : 0,
  );
}

function insertRevokedRoot(tx: SqliteScope, r: RevokedRootRecord): void {
  requireText('revoked root id', r.id);
  requireText('revoked root certFingerprint', r.certFingerprint);
  requireTime('revoked root revokedAt', r.revokedAt);
  if (r.anchorsDer.length === 0) throw invalidArgument(`revoked root ${r.id}: no trust anchor recorded`);
  // A root ID is never reused, so a second record for one is a bug; the primary key refuses it in the transaction.
  tx.s.insertRevokedRoot.run(r.id, r.subject, r.certFingerprint, r.subjectKeyId ?? null, Buffer.concat(r.anchorsDer), r.revokedAt);
}

function insertRevokedJwtKey(tx: SqliteScope, k: RevokedJwtKeyRecord): void {
  requireText('revoked JWT key id', k.id);
  requireText('revoked JWT key keyId', k.keyId);
  requireTime('revoked JWT key revokedAt', k.revokedAt);
  tx.s.insertRevokedJwtKey.run(k.id, k.keyId, k.revokedAt);
}

export function changeCaState(tx: SqliteScope, id: string, state: CaState): void {
  if (!CA_STATES.has(state)) throw invalidArgument(`CA record ${id}: state "${state}" must be prepared, active, old or tainted`);
  if (tx.s.setCaState.run(state, tx.clock.now(), id).changes === 0) throw notFound(`CA journal record ${id} not found`);
}
