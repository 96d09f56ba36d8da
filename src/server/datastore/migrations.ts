/**
 * The datastore schema as versioned migrations. Migrations only ever get appended: a released migration is never
 * edited, because databases in the field already ran it.
 *
 * Portability (PostgreSQL is the next engine): plain TEXT / BIGINT / BLOB columns, booleans as 0/1, no SQLite-only
 * features (no STRICT, WITHOUT ROWID, AUTOINCREMENT, partial indexes or JSON functions). Times are milliseconds since
 * the epoch and revisions grow without bound, hence BIGINT (SQLite treats it as INTEGER; PostgreSQL's INTEGER is only
 * 32 bits). BLOB is the one type PostgreSQL spells differently (BYTEA). Lists that are only ever read whole (DNS
 * names, bundle authorities) are JSON in TEXT columns, parsed by the application; lists that queries search
 * (entry selectors, federated trust domains) have their own indexed tables.
 */
export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

/** The table that marks a database as meshid's; a database without it (and not empty) is refused. */
export const INFO_TABLE = 'datastore_info';
export const INFO_APPLICATION = 'meshid';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    statements: [
      `CREATE TABLE ${INFO_TABLE} (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      )`,
      `INSERT INTO ${INFO_TABLE} (key, value) VALUES ('application', '${INFO_APPLICATION}')`,

      // One row per counter; 'changes' is the change-feed revision. A counter row (rather than a sequence) serializes
      // writers, so revisions commit in order and a reader never skips one that commits late.
      `CREATE TABLE revisions (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
      )`,
      `INSERT INTO revisions (name, value) VALUES ('changes', 0)`,

      `CREATE TABLE registration_entries (
        id TEXT PRIMARY KEY,
        spiffe_id TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        -- sha256 of (spiffe_id, parent_id, sorted selectors): the uniqueness key, fixed-size so it indexes anywhere.
        identity_hash TEXT NOT NULL UNIQUE,
        -- JSON [{"type","value"}], sorted; the searchable copy is entry_selectors.
        selectors TEXT NOT NULL,
        x509_svid_ttl_seconds BIGINT NOT NULL,
        jwt_svid_ttl_seconds BIGINT NOT NULL,
        dns_names TEXT NOT NULL,
        hint TEXT NOT NULL,
        -- JSON array of bare trust domain names; the searchable copy is entry_federates_with.
        federates_with TEXT NOT NULL,
        admin INTEGER NOT NULL CHECK (admin IN (0, 1)),
        downstream INTEGER NOT NULL CHECK (downstream IN (0, 1)),
        revision BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE INDEX registration_entries_parent_id ON registration_entries (parent_id)`,
      `CREATE INDEX registration_entries_spiffe_id ON registration_entries (spiffe_id)`,
      `CREATE INDEX registration_entries_revision ON registration_entries (revision)`,
      `CREATE INDEX registration_entries_hint ON registration_entries (hint)`,

      `CREATE TABLE entry_selectors (
        entry_id TEXT NOT NULL REFERENCES registration_entries (id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (entry_id, type, value)
      )`,
      `CREATE INDEX entry_selectors_selector ON entry_selectors (type, value)`,

      `CREATE TABLE entry_federates_with (
        entry_id TEXT NOT NULL REFERENCES registration_entries (id) ON DELETE CASCADE,
        trust_domain TEXT NOT NULL,
        PRIMARY KEY (entry_id, trust_domain)
      )`,
      `CREATE INDEX entry_federates_with_trust_domain ON entry_federates_with (trust_domain)`,

      // Deleted entries, so the change feed can report deletions since a revision.
      `CREATE TABLE entry_tombstones (
        entry_id TEXT PRIMARY KEY,
        revision BIGINT NOT NULL,
        deleted_at BIGINT NOT NULL
      )`,
      `CREATE INDEX entry_tombstones_revision ON entry_tombstones (revision)`,

      `CREATE TABLE join_tokens (
        token_hash TEXT PRIMARY KEY,
        datacenter TEXT NOT NULL,
        selectors TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      `CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at)`,

      `CREATE TABLE attested_agents (
        spiffe_id TEXT PRIMARY KEY,
        datacenter TEXT NOT NULL,
        selectors TEXT NOT NULL,
        cert_serial TEXT NOT NULL,
        cert_not_after BIGINT NOT NULL,
        previous_cert_serial TEXT,
        attested_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        banned INTEGER NOT NULL CHECK (banned IN (0, 1))
      )`,
      `CREATE INDEX attested_agents_cert_not_after ON attested_agents (cert_not_after)`,

      `CREATE TABLE bundles (
        trust_domain TEXT PRIMARY KEY,
        -- JSON array of base64 DER certificates.
        x509_authorities TEXT NOT NULL,
        -- JSON [{"kid","publicKeyPem","notAfter"}].
        jwt_authorities TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        revision BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,

      `CREATE TABLE ca_records (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('root', 'intermediate', 'jwt')),
        datacenter TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'old', 'tainted')),
        cert_der BLOB,
        public_key_pem TEXT,
        key_id TEXT NOT NULL,
        not_before BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'entry tombstone pruning',
    statements: [
      // The highest revision whose tombstones have been pruned: a change-feed reader behind it may have missed a
      // deletion, so it is told to reload instead of getting a delta. A revision, kept next to the change counter.
      `INSERT INTO revisions (name, value) VALUES ('entry_tombstones_pruned', 0)`,
      // Tombstones are pruned by age.
      `CREATE INDEX entry_tombstones_deleted_at ON entry_tombstones (deleted_at)`,
    ],
  },
  {
    version: 3,
    name: 'upstream CA chains and anchors',
    statements: [
      // For a root an upstream PKI issued: its issuers up to the PKI's roots (served in every chain under it) and
      // those roots (published while it lives), each as concatenated DER; NULL for a root that is its own anchor.
      `ALTER TABLE ca_records ADD COLUMN upstream_chain BLOB`,
      `ALTER TABLE ca_records ADD COLUMN upstream_anchors BLOB`,
    ],
  },
  {
    version: 4,
    name: 'federation relationships',
    statements: [
      // Made through the admin API (SPIRE's "federation create"); the config file's federates_with is not stored.
      `CREATE TABLE federation_relationships (
        trust_domain TEXT PRIMARY KEY,
        bundle_endpoint_url TEXT NOT NULL,
        bundle_endpoint_profile TEXT NOT NULL,
        -- https_spiffe only; empty for https_web.
        endpoint_spiffe_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 5,
    name: 'agent SVID issuer',
    statements: [
      // The CA journal ID of the intermediate that signed the agent's current SVID: `ca revoke` of a root refuses
      // while live agents still chain to it. NULL for agents that have not renewed since this migration (unknown).
      `ALTER TABLE attested_agents ADD COLUMN cert_issuer_id TEXT`,
    ],
  },
  {
    version: 6,
    name: 'root source',
    statements: [
      // For a root: 1 when it is an upstream CA (--upstream-ca-cert) whose key the server holds a copy of, 0 when meshid
      // made it; a restart without the upstream flags moves signing off the former. NULL for other kinds, and for roots
      // written before this migration: the CA classifies those by their certificate (rootFromUpstreamCa).
      `ALTER TABLE ca_records ADD COLUMN upstream_ca INTEGER CHECK (upstream_ca IN (0, 1))`,
    ],
  },
  {
    version: 7,
    name: 'revoked roots',
    statements: [
      // A root `ca revoke` took out of the CA journal, written in the revoke's own transaction: a later start whose
      // bundle publishes the PKI root it chained to again (an --upstream-bundle that lists it) warns that the revoked
      // CA's key is trusted again. anchors: the trust anchors its chain ended at, as concatenated DER. Empty in data
      // dirs of earlier versions: revokes made before it are not known.
      `CREATE TABLE revoked_roots (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        cert_fingerprint TEXT NOT NULL,
        subject_key_id TEXT,
        anchors BLOB NOT NULL,
        revoked_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 8,
    name: 'agent version',
    statements: [
      // The version the agent last reported (its Attest and every Sync it opens), for `agent list` during an upgrade
      // in waves. NULL until it reports one: agents of earlier versions send none.
      `ALTER TABLE attested_agents ADD COLUMN agent_version TEXT`,
    ],
  },
  {
    version: 9,
    name: 'revoked JWT keys',
    statements: [
      // A JWT key `ca revoke` took out of the CA journal, written in the revoke's own transaction, so that the same
      // revoke sent again (its answer lost) is told it was done rather than that no such key exists. Empty in data
      // dirs of earlier versions: revokes made before it are not known.
      `CREATE TABLE revoked_jwt_keys (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        revoked_at BIGINT NOT NULL
      )`,
    ],
  },
];

/** The schema version this code writes and understands. */
export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The bookkeeping table, created before any migration runs. */
export const SCHEMA_MIGRATIONS_DDL = `CREATE TABLE schema_migrations (
  version BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;
