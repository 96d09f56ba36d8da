import type Database from 'better-sqlite3';
import { AGENT_COLUMNS, BUNDLE_COLUMNS, CA_COLUMNS, ENTRY_COLUMNS, ENTRY_VALUE_COLUMNS, RELATIONSHIP_COLUMNS, REVOKED_JWT_KEY_COLUMNS, REVOKED_ROOT_COLUMNS } from './sqlite-rows.js';

/**
 * Every fixed SQL statement of the SQLite datastore, prepared once per connection. Plain SQL that PostgreSQL also
 * accepts (apart from `?` placeholders, which a PostgreSQL driver numbers): ON CONFLICT … DO UPDATE for upserts,
 * DELETE … RETURNING for consume-once reads.
 */
export type Statements = ReturnType<typeof prepareStatements>;

export function prepareStatements(db: Database.Database) {
  const p = (sql: string): Database.Statement => db.prepare(sql);
  return {
    getRevision: p("SELECT value FROM revisions WHERE name = 'changes'"),
    bumpRevision: p("UPDATE revisions SET value = value + 1 WHERE name = 'changes'"),
    advanceRevision: p("UPDATE revisions SET value = value + ? WHERE name = 'changes'"),

    entryById: p(`SELECT ${ENTRY_COLUMNS} FROM registration_entries e WHERE e.id = ?`),
    entryByHash: p('SELECT id FROM registration_entries WHERE identity_hash = ?'),
    allEntries: p(`SELECT ${ENTRY_VALUE_COLUMNS} FROM registration_entries e ORDER BY e.id`).raw(),
    entriesAfter: p(`SELECT ${ENTRY_VALUE_COLUMNS} FROM registration_entries e WHERE e.id > ? ORDER BY e.id LIMIT ?`).raw(),
    countEntries: p('SELECT COUNT(*) AS n FROM registration_entries'),
    entriesSince: p(`SELECT ${ENTRY_VALUE_COLUMNS} FROM registration_entries e WHERE e.revision > ? ORDER BY e.revision, e.id`).raw(),
    insertEntry: p(
      'INSERT INTO registration_entries (id, spiffe_id, parent_id, identity_hash, selectors, x509_svid_ttl_seconds, jwt_svid_ttl_seconds, ' +
        'dns_names, hint, federates_with, admin, downstream, revision, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    updateEntry: p(
      'UPDATE registration_entries SET spiffe_id = ?, parent_id = ?, identity_hash = ?, selectors = ?, x509_svid_ttl_seconds = ?, ' +
        'jwt_svid_ttl_seconds = ?, dns_names = ?, hint = ?, federates_with = ?, admin = ?, downstream = ?, revision = ?, created_at = ?, ' +
        'updated_at = ? WHERE id = ?',
    ),
    deleteEntry: p('DELETE FROM registration_entries WHERE id = ?'),
    insertSelector: p('INSERT INTO entry_selectors (entry_id, type, value) VALUES (?, ?, ?)'),
    deleteSelectors: p('DELETE FROM entry_selectors WHERE entry_id = ?'),
    insertFederatesWith: p('INSERT INTO entry_federates_with (entry_id, trust_domain) VALUES (?, ?)'),
    deleteFederatesWith: p('DELETE FROM entry_federates_with WHERE entry_id = ?'),
    entryIdsFederatingWith: p('SELECT entry_id FROM entry_federates_with WHERE trust_domain = ? ORDER BY entry_id'),
    upsertTombstone: p(
      'INSERT INTO entry_tombstones (entry_id, revision, deleted_at) VALUES (?, ?, ?) ' +
        'ON CONFLICT (entry_id) DO UPDATE SET revision = excluded.revision, deleted_at = excluded.deleted_at',
    ),
    deleteTombstone: p('DELETE FROM entry_tombstones WHERE entry_id = ?'),
    tombstonesSince: p('SELECT entry_id FROM entry_tombstones WHERE revision > ? ORDER BY revision, entry_id'),
    newestTombstoneBefore: p('SELECT MAX(revision) AS revision FROM entry_tombstones WHERE deleted_at < ?'),
    pruneTombstones: p('DELETE FROM entry_tombstones WHERE deleted_at < ?'),
    getTombstonesPruned: p("SELECT value FROM revisions WHERE name = 'entry_tombstones_pruned'"),
    // Only ever raised: portable spelling of MAX(value, ?), which PostgreSQL calls GREATEST.
    raiseTombstonesPruned: p("UPDATE revisions SET value = ? WHERE name = 'entry_tombstones_pruned' AND value < ?"),

    joinTokenExists: p('SELECT 1 FROM join_tokens WHERE token_hash = ?'),
    joinTokenByHash: p('SELECT token_hash, datacenter, selectors, expires_at, created_at FROM join_tokens WHERE token_hash = ?'),
    insertJoinToken: p('INSERT INTO join_tokens (token_hash, datacenter, selectors, expires_at, created_at) VALUES (?, ?, ?, ?, ?)'),
    // DELETE … RETURNING (SQLite ≥ 3.35, PostgreSQL): find-and-consume in one statement, so a token is used once.
    consumeJoinToken: p('DELETE FROM join_tokens WHERE token_hash = ? RETURNING token_hash, datacenter, selectors, expires_at, created_at'),
    consumeAllJoinTokens: p('DELETE FROM join_tokens RETURNING token_hash, datacenter, selectors, expires_at, created_at'),
    pruneJoinTokens: p('DELETE FROM join_tokens WHERE expires_at <= ?'),

    agentById: p(`SELECT ${AGENT_COLUMNS} FROM attested_agents WHERE spiffe_id = ?`),
    allAgents: p(`SELECT ${AGENT_COLUMNS} FROM attested_agents ORDER BY spiffe_id`),
    agentsByDatacenter: p(`SELECT ${AGENT_COLUMNS} FROM attested_agents WHERE datacenter = ? ORDER BY spiffe_id`),
    liveAgentsByDatacenter: p('SELECT datacenter, count(*) AS agents FROM attested_agents WHERE banned = 0 AND cert_not_after > ? GROUP BY datacenter'),
    insertAgent: p(`INSERT INTO attested_agents (${AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    // Not updated_at: that dates the SVID record, which agent-auth.ts compares certificates with.
    setAgentVersion: p('UPDATE attested_agents SET agent_version = ? WHERE spiffe_id = ?'),
    retirePreviousAgentCert: p('UPDATE attested_agents SET previous_cert_serial = NULL WHERE spiffe_id = ? AND cert_serial = ?'),
    updateAgentCert: p(
      'UPDATE attested_agents SET cert_serial = ?, cert_not_after = ?, previous_cert_serial = ?, cert_issuer_id = ?, updated_at = ? WHERE spiffe_id = ?',
    ),
    deleteAgent: p('DELETE FROM attested_agents WHERE spiffe_id = ?'),
    banAgent: p('UPDATE attested_agents SET banned = 1, updated_at = ? WHERE spiffe_id = ?'),
    pruneAgents: p('DELETE FROM attested_agents WHERE cert_not_after <= ? RETURNING spiffe_id'),

    bundleById: p(`SELECT ${BUNDLE_COLUMNS} FROM bundles WHERE trust_domain = ?`),
    bundleContent: p('SELECT x509_authorities, jwt_authorities, sequence FROM bundles WHERE trust_domain = ?'),
    allBundles: p(`SELECT ${BUNDLE_COLUMNS} FROM bundles ORDER BY trust_domain`),
    upsertBundle: p(
      'INSERT INTO bundles (trust_domain, x509_authorities, jwt_authorities, sequence, revision, updated_at) VALUES (?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (trust_domain) DO UPDATE SET x509_authorities = excluded.x509_authorities, ' +
        'jwt_authorities = excluded.jwt_authorities, sequence = excluded.sequence, revision = excluded.revision, updated_at = excluded.updated_at',
    ),
    deleteBundle: p('DELETE FROM bundles WHERE trust_domain = ?'),

    relationshipById: p(`SELECT ${RELATIONSHIP_COLUMNS} FROM federation_relationships WHERE trust_domain = ?`),
    allRelationships: p(`SELECT ${RELATIONSHIP_COLUMNS} FROM federation_relationships ORDER BY trust_domain`),
    insertRelationship: p(`INSERT INTO federation_relationships (${RELATIONSHIP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    updateRelationship: p(
      'UPDATE federation_relationships SET bundle_endpoint_url = ?, bundle_endpoint_profile = ?, endpoint_spiffe_id = ?, updated_at = ? WHERE trust_domain = ?',
    ),
    deleteRelationship: p('DELETE FROM federation_relationships WHERE trust_domain = ?'),

    caRecordExists: p('SELECT 1 FROM ca_records WHERE id = ?'),
    allCaRecords: p(`SELECT ${CA_COLUMNS} FROM ca_records ORDER BY created_at, id`),
    insertCaRecord: p(`INSERT INTO ca_records (${CA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    setCaState: p('UPDATE ca_records SET state = ?, updated_at = ? WHERE id = ?'),
    deleteCaRecord: p('DELETE FROM ca_records WHERE id = ?'),
    allRevokedRoots: p(`SELECT ${REVOKED_ROOT_COLUMNS} FROM revoked_roots ORDER BY revoked_at, id`),
    insertRevokedRoot: p(`INSERT INTO revoked_roots (${REVOKED_ROOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    allRevokedJwtKeys: p(`SELECT ${REVOKED_JWT_KEY_COLUMNS} FROM revoked_jwt_keys ORDER BY revoked_at, id`),
    insertRevokedJwtKey: p(`INSERT INTO revoked_jwt_keys (${REVOKED_JWT_KEY_COLUMNS}) VALUES (?, ?, ?)`),
  };
}
