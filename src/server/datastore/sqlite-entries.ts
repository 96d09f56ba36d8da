import { alreadyExists, failedPrecondition, invalidArgument, MeshidError, notFound } from '../../common/errors.js';
import type { CreateEntryResult, EntryFilter, EntryPage, EntryPatch, EntryWriteOptions, NewEntry, RegistrationEntry } from './datastore.js';
import { encodePageToken, entryFilterSql } from './entry-filter.js';
import { entryIdentityHash, newEntryId, normalizeNewEntry } from './entry-identity.js';
import { ENTRY_COLUMNS, entryFromRow, entryFromValues, type EntryRow, type EntryValues } from './sqlite-rows.js';
import type { SqliteScope } from './sqlite-scope.js';

/**
 * Registration entries in the SQLite datastore: their rows with their selectors and federates_with, each write taking
 * a revision of the change feed, and the refusals of twins and of trust domains without a bundle. Each function runs
 * inside the datastore's read or write (SqliteDatastore), which gives it the scope.
 */

const ENTRY_FIELDS = [
  'spiffeId', 'parentId', 'selectors', 'x509SvidTtlSeconds', 'jwtSvidTtlSeconds', 'dnsNames', 'hint', 'federatesWith', 'admin', 'downstream',
] as const;
/** Parameters per IN (…) list: far below SQLite's and PostgreSQL's limits, large enough to keep round trips few. */
const IN_CHUNK = 500;

export function createEntries(tx: SqliteScope, entries: NewEntry[], opts: EntryWriteOptions = {}): CreateEntryResult[] {
  const now = tx.clock.now();
  return entries.map((input): CreateEntryResult => {
    try {
      const e = normalizeNewEntry(input);
      assertFederable(tx, e.federatesWith, opts);
      // Before the id: an exported file created again names its entries' own ids, and is answered with the twins.
      const hash = entryIdentityHash(e);
      const twin = twinOf(tx, hash);
      if (twin !== undefined) return { error: twinExists(e, twin.id), existing: twin };
      const id = e.id ?? newEntryId();
      if (tx.s.entryById.get(id) !== undefined) throw alreadyExists(`registration entry id ${id} is already in use`);
      const entry: RegistrationEntry = { ...e, id, revision: tx.bump('entry'), createdAt: now, updatedAt: now };
      insertEntry(tx, entry, hash);
      return { entry };
    } catch (err) {
      // Expected per-entry refusals; anything else aborts (and rolls back) the whole batch.
      if (err instanceof MeshidError) return { error: err };
      throw err;
    }
  });
}

export function getEntry(tx: SqliteScope, id: string): RegistrationEntry {
  const row = tx.s.entryById.get(id) as EntryRow | undefined;
  if (row === undefined) throw notFound(`registration entry ${id} not found`);
  return entryFromRow(row);
}

export function listEntries(tx: SqliteScope, filter: EntryFilter = {}): EntryPage {
  const pageSize = filter.pageSize ?? 0;
  if (!Number.isSafeInteger(pageSize) || pageSize < 0) throw invalidArgument(`page size must be a whole number ≥ 0, got ${pageSize}`);
  const { where, params } = entryFilterSql(filter);
  const limit = pageSize > 0 ? ' LIMIT ?' : '';
  const sql = `SELECT ${ENTRY_COLUMNS} FROM registration_entries e WHERE ${where} ORDER BY e.id${limit}`;
  const rows = tx.db.prepare(sql).all(...params, ...(pageSize > 0 ? [pageSize + 1] : [])) as EntryRow[];
  if (pageSize > 0 && rows.length > pageSize) {
    const page = rows.slice(0, pageSize);
    return { entries: page.map(entryFromRow), nextPageToken: encodePageToken(page[page.length - 1]!.id) };
  }
  return { entries: rows.map(entryFromRow) };
}

/** Up to `limit` entries whose id sorts after `afterId` ('' for the first), ordered by id: a page of listAllEntries. */
export function entriesAfter(tx: SqliteScope, afterId: string, limit: number): RegistrationEntry[] {
  return (tx.s.entriesAfter.all(afterId, limit) as EntryValues[]).map(entryFromValues);
}

/** Every entry, ordered by id, in one read: the reset answer of the change feed, which must be one snapshot. */
export function allEntries(tx: SqliteScope): RegistrationEntry[] {
  return (tx.s.allEntries.all() as EntryValues[]).map(entryFromValues);
}

/** The entries written after `revision`, in revision order: the upserts of the change feed's delta. */
export function entriesSince(tx: SqliteScope, revision: number): RegistrationEntry[] {
  return (tx.s.entriesSince.all(revision) as EntryValues[]).map(entryFromValues);
}

export function listEntriesByParentIds(tx: SqliteScope, parentIds: readonly string[]): RegistrationEntry[] {
  const unique = [...new Set(parentIds)];
  const rows: EntryRow[] = [];
  for (let i = 0; i < unique.length; i += IN_CHUNK) {
    const chunk = unique.slice(i, i + IN_CHUNK);
    const sql = `SELECT ${ENTRY_COLUMNS} FROM registration_entries e WHERE e.parent_id IN (${chunk.map(() => '?').join(', ')})`;
    rows.push(...(tx.db.prepare(sql).all(...chunk) as EntryRow[]));
  }
  return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map(entryFromRow);
}

export function updateEntry(tx: SqliteScope, id: string, patch: EntryPatch, opts: EntryWriteOptions = {}): RegistrationEntry {
  const row = tx.s.entryById.get(id) as EntryRow | undefined;
  if (row === undefined) throw notFound(`registration entry ${id} not found`);
  const current = entryFromRow(row);
  const merged: NewEntry = { ...pickEntryFields(current) };
  for (const field of ENTRY_FIELDS) {
    if (patch[field] !== undefined) (merged as unknown as Record<string, unknown>)[field] = patch[field];
  }
  const next = normalizeNewEntry(merged);
  // Checked again here, in the write's transaction: the API validates against the entry it read before, and a
  // concurrent update of the other field (spiffe_id vs parent_id) could otherwise combine into a self-parent.
  if (next.parentId === next.spiffeId) {
    throw invalidArgument(`registration entry ${id} would become its own parent (${next.spiffeId}): another update changed it meanwhile; read it again and retry`);
  }
  if (sameContent(pickEntryFields(current), next)) return current;
  if (patch.federatesWith !== undefined) assertFederable(tx, next.federatesWith, opts);
  const hash = entryIdentityHash(next);
  if (hash !== row.identity_hash) assertNoTwin(tx, next, hash);
  const now = tx.clock.now();
  const updated: RegistrationEntry = { ...next, id, revision: tx.bump('entry'), createdAt: current.createdAt, updatedAt: now };
  tx.s.updateEntry.run(...entryColumns(updated, hash).slice(1), id);
  if (!sameContent(current.selectors, updated.selectors)) {
    tx.s.deleteSelectors.run(id);
    for (const s of updated.selectors) tx.s.insertSelector.run(id, s.type, s.value);
  }
  if (!sameContent(current.federatesWith, updated.federatesWith)) {
    tx.s.deleteFederatesWith.run(id);
    for (const td of updated.federatesWith) tx.s.insertFederatesWith.run(id, td);
  }
  return updated;
}

export function deleteEntries(tx: SqliteScope, ids: readonly string[]): Array<{ id: string; error?: MeshidError }> {
  const now = tx.clock.now();
  return ids.map((id) => {
    // entry_selectors and entry_federates_with rows go with it (ON DELETE CASCADE).
    if (tx.s.deleteEntry.run(id).changes === 0) return { id, error: notFound(`registration entry ${id} not found`) };
    tx.s.upsertTombstone.run(id, tx.bump('entry'), now);
    return { id };
  });
}

export function countEntries(tx: SqliteScope): number {
  return (tx.s.countEntries.get() as { n: number }).n;
}

/** Takes `trustDomain` out of an entry's federates_with as a new revision (its identity hash does not cover it). */
export function dissociate(tx: SqliteScope, id: string, trustDomain: string): void {
  const current = entryFromRow(tx.s.entryById.get(id) as EntryRow);
  const updated: RegistrationEntry = {
    ...current,
    federatesWith: current.federatesWith.filter((td) => td !== trustDomain),
    revision: tx.bump('entry'),
    updatedAt: tx.clock.now(),
  };
  tx.s.updateEntry.run(...entryColumns(updated, entryIdentityHash(updated)).slice(1), id);
  tx.s.deleteFederatesWith.run(id);
  for (const td of updated.federatesWith) tx.s.insertFederatesWith.run(id, td);
}

export function entriesFederatingWith(tx: SqliteScope, trustDomain: string): string[] {
  return (tx.s.entryIdsFederatingWith.all(trustDomain) as Array<{ entry_id: string }>).map((r) => r.entry_id);
}

function assertFederable(tx: SqliteScope, trustDomains: readonly string[], opts: EntryWriteOptions): void {
  const allowed = opts.federableWithoutBundle;
  if (allowed === undefined) return;
  const missing = trustDomains.filter(
    (td) => !allowed.has(td) && tx.s.bundleById.get(td) === undefined && tx.s.relationshipById.get(td) === undefined,
  );
  if (missing.length > 0) {
    throw failedPrecondition(
      `federates_with names ${missing.join(', ')}, whose bundle this server does not have: set it first with ` +
        `"meshid-server bundle set --trust-domain ${missing[0]}", or list it in the config's federates_with`,
    );
  }
}

function assertNoTwin(tx: SqliteScope, e: NewEntry, hash: string): void {
  const twin = twinOf(tx, hash);
  if (twin !== undefined) throw twinExists(e, twin.id);
}

/** The entry with this identity hash (SPIFFE ID, parent, selectors), if any. */
function twinOf(tx: SqliteScope, hash: string): RegistrationEntry | undefined {
  const twin = tx.s.entryByHash.get(hash) as { id: string } | undefined;
  return twin === undefined ? undefined : entryFromRow(tx.s.entryById.get(twin.id) as EntryRow);
}

function insertEntry(tx: SqliteScope, e: RegistrationEntry, hash: string): void {
  tx.s.insertEntry.run(...entryColumns(e, hash));
  for (const s of e.selectors) tx.s.insertSelector.run(e.id, s.type, s.value);
  for (const td of e.federatesWith) tx.s.insertFederatesWith.run(e.id, td);
  // A restored entry reusing a deleted id is alive again.
  tx.s.deleteTombstone.run(e.id);
}

/** The column values of an entry, in the order of insertEntry's column list (id first). */
function entryColumns(e: RegistrationEntry, hash: string): Array<string | number> {
  return [
    e.id, e.spiffeId, e.parentId, hash, JSON.stringify(e.selectors), e.x509SvidTtlSeconds, e.jwtSvidTtlSeconds,
    JSON.stringify(e.dnsNames), e.hint, JSON.stringify(e.federatesWith), e.admin ? 1 : 0, e.downstream ? 1 : 0,
    e.revision, e.createdAt, e.updatedAt,
  ];
}

function pickEntryFields(e: NewEntry): NewEntry {
  return {
    spiffeId: e.spiffeId, parentId: e.parentId, selectors: e.selectors, x509SvidTtlSeconds: e.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: e.jwtSvidTtlSeconds, dnsNames: e.dnsNames, hint: e.hint, federatesWith: e.federatesWith,
    admin: e.admin, downstream: e.downstream,
  };
}

function sameContent(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** "2 registration entries federate with partner.org (e-1, e-2)": the first few IDs, for a refusal's message. */
export function federatingSummary(ids: readonly string[], trustDomain: string): string {
  const n = ids.length;
  return `${n} registration ${n === 1 ? 'entry federates' : 'entries federate'} with ${trustDomain} (${ids.slice(0, 3).join(', ')}${n > 3 ? ', ...' : ''})`;
}

/** The refusal of an entry whose SPIFFE ID, parent and selectors another entry has (SPIRE's "similar entry"). */
function twinExists(e: NewEntry, twinId: string): MeshidError {
  return alreadyExists(`an entry with SPIFFE ID ${e.spiffeId}, parent ${e.parentId} and the same selectors already exists (${twinId})`);
}
