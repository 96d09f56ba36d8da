import type { Selector } from '../../common/spiffe/selector.js';
import type { MeshidError } from '../../common/errors.js';
import type { AuthorityKind, AuthorityState, CaJournalChange, CaRecord, RevokedJwtKeyRecord, RevokedRootRecord } from '../ca/ca-journal.js';

export type { Selector };

/**
 * The server's datastore, as the rest of the server sees it. Every method returns a Promise even though the SQLite
 * implementation is synchronous underneath: the interface is shaped for a networked SQL engine (PostgreSQL for
 * multi-server deployments) so callers never assume a call is free or instantaneous.
 *
 * Contract for every implementation:
 * - every mutation is one transaction: it happens entirely or not at all, also across kill -9;
 * - constraint violations surface as MeshidError (already_exists, not_found, failed_precondition), never as a raw
 *   driver error, and never leave partial state;
 * - input validation (SPIFFE ID syntax, TTL limits) is the API layer's job; the datastore only refuses what would
 *   corrupt it;
 * - after close(), every call fails with `unavailable`.
 */
/** Rules an entry write is checked against inside its own transaction. */
/** One entry's outcome in createEntries: the entry created, or why not (with the twin it duplicates, if that was why). */
export interface CreateEntryResult {
  entry?: RegistrationEntry;
  error?: MeshidError;
  existing?: RegistrationEntry;
}

export interface EntryWriteOptions {
  /**
   * When given, federates_with may name only trust domains with a stored bundle, a stored federation relationship,
   * or in this set (the config's relationships), the last two before their first poll; failed_precondition
   * otherwise. Checked in the write's transaction, so a bundle deleted in the same instant cannot leave the entry
   * federating with nothing.
   */
  federableWithoutBundle?: ReadonlySet<string>;
}

export interface Datastore {
  // Registration entries.
  /**
   * Creates a batch of entries. Each input gets its own result (entry or error) at the same index. All entries that
   * succeed are committed in ONE transaction with ONE revision bump: a batch is atomic against crashes and is pushed
   * to agents as a single change. Per-entry conflicts (same SPIFFE ID + parent + selector set, already present or
   * earlier in the same batch; a reused id) are reported in that entry's result and do not affect the others; an
   * unexpected storage failure rejects the whole call and commits nothing. A twin's result carries the entry it
   * duplicates (`existing`), as SPIRE's answers carry it: a script re-running its creates learns the IDs.
   */
  createEntries(entries: NewEntry[], opts?: EntryWriteOptions): Promise<CreateEntryResult[]>;
  /** Throws not_found when no entry has this id. */
  getEntry(id: string): Promise<RegistrationEntry>;
  /** Entries matching every given criterion, ordered by id; pages are keyset-based, so they stay stable under writes. */
  listEntries(filter?: EntryFilter): Promise<EntryPage>;
  /**
   * Every entry, ordered by id (loads the server's in-memory index at startup). Read in pages, the event loop let go
   * between them, so not one snapshot: a write meanwhile may show in some pages only. The caller reads
   * currentRevision first and catches up from there with the change feed.
   */
  listAllEntries(): Promise<RegistrationEntry[]>;
  /** Entries whose parentId is one of the given IDs (the authorized-entries walk; parent_id is indexed). */
  listEntriesByParentIds(parentIds: readonly string[]): Promise<RegistrationEntry[]>;
  /**
   * Applies the patch and bumps the revision. Throws not_found for an unknown id and already_exists when the result
   * would collide with another entry. A patch that changes nothing returns the entry untouched (no revision bump).
   */
  updateEntry(id: string, patch: EntryPatch, opts?: EntryWriteOptions): Promise<RegistrationEntry>;
  /** Deletes in one transaction; unknown ids get a not_found result, the others are deleted (tombstoned). */
  deleteEntries(ids: readonly string[]): Promise<Array<{ id: string; error?: MeshidError }>>;
  countEntries(): Promise<number>;

  // Change feed.
  /** The revision of the last committed change (0 for a new datastore). */
  currentRevision(): Promise<number>;
  /**
   * What changed after `revision`: entries created or updated since (their current state) and ids deleted since.
   * `revision` in the result is the current revision, to pass to the next call. When `revision` is below the
   * tombstone watermark (pruneEntryTombstones) the deletions since are no longer known: the answer is then a reset,
   * every entry, which replaces the reader's copy.
   */
  listEntryChangesSince(revision: number): Promise<EntryChanges>;
  /**
   * Deletes the tombstones of entries deleted before `before` (deletedAt < before) and returns how many. In the same
   * transaction it records the highest revision pruned (the watermark): the deletions a reader behind it would need
   * are gone. Changes nothing a reader can see, so it takes no revision and notifies no listener.
   */
  pruneEntryTombstones(before: number): Promise<number>;
  /**
   * Calls `listener` after each committed change made through this instance. In-process only: good for one server;
   * a PostgreSQL implementation shared by several servers needs LISTEN/NOTIFY to hear the other servers' writes.
   * Returns the unsubscribe function.
   */
  onChange(listener: ChangeListener): () => void;

  // Join tokens (only sha256(token) is stored).
  createJoinToken(input: NewJoinToken): Promise<JoinToken>;
  /**
   * Deletes the token and returns its record, atomically: of two concurrent calls only one gets the record. Both
   * attestation and revocation (an operator's RevokeJoinToken) use a token up this way. Returns undefined for an
   * unknown (or already used or revoked) token. An expired token is consumed too: the caller checks
   * `expiresAt`, so a leaked expired token cannot be probed repeatedly.
   */
  consumeJoinToken(token: string): Promise<JoinToken | undefined>;
  /**
   * Deletes every token in one statement and returns their records, expired ones included: an operator voiding the
   * tokens a restored backup brought back (RevokeAllJoinTokens). An attestation racing it gets a token or this does.
   */
  consumeAllJoinTokens(): Promise<JoinToken[]>;
  /** The token's record, left in place; undefined for an unknown (or already used or revoked) token. */
  findJoinToken(token: string): Promise<JoinToken | undefined>;
  /** Deletes tokens with expiresAt <= now; returns how many. */
  pruneJoinTokens(now: number): Promise<number>;

  // Attested agents.
  /**
   * Throws already_exists when an agent with this SPIFFE ID is present. With `joinToken`, the token is consumed in
   * the same transaction, so a failed write leaves it usable (a full disk must not cost the operator a token), and
   * not_found is thrown, with nothing written, when it is no longer there (used by a concurrent attestation).
   */
  createAgent(agent: NewAgent, options?: { joinToken?: string }): Promise<AttestedAgent>;
  getAgent(spiffeId: string): Promise<AttestedAgent | undefined>;
  /** Every agent (banned ones included), ordered by SPIFFE ID. */
  listAgents(filter?: { datacenter?: string }): Promise<AttestedAgent[]>;
  /**
   * How many agents each datacenter has that are neither banned nor expired (certNotAfter > now), without reading
   * the agents: the start counts those of datacenters no longer served. Datacenters with none are left out.
   */
  countLiveAgentsByDatacenter(now: number): Promise<Map<string, number>>;
  /**
   * Records an agent SVID renewed from the certificate with serial `renewedFrom`. The new serial becomes current;
   * `renewedFrom` stays valid as the previous one until the agent first uses the new certificate
   * (retirePreviousAgentCert), so an agent whose renewal answer was lost can still renew, while a copy of any older
   * certificate is refused. `issuerId`: the CA journal ID of the intermediate that signed it.
   */
  updateAgentCert(spiffeId: string, certSerial: string, certNotAfter: number, renewedFrom: string, issuerId?: string): Promise<AttestedAgent>;
  /**
   * Records the version the agent reports; undefined forgets the one stored (the agent now runs a build that reports
   * none). Changes neither updatedAt nor the change feed: nothing an agent is authorized for depends on it. Throws
   * not_found.
   */
  setAgentVersion(spiffeId: string, version: string | undefined): Promise<void>;
  /** Forgets the previous serial once the agent has used `currentSerial`; nothing if that is no longer current. */
  retirePreviousAgentCert(spiffeId: string, currentSerial: string): Promise<void>;
  /** Deletes the agent (it must attest again). Throws not_found. */
  evictAgent(spiffeId: string): Promise<void>;
  /** Marks the agent banned; it stays listed so the ban is visible. Throws not_found. */
  banAgent(spiffeId: string): Promise<AttestedAgent>;
  /** Deletes agents whose certificate expired (certNotAfter <= now), banned or not; returns their SPIFFE IDs. */
  pruneAgents(now: number): Promise<string[]>;

  // Bundles (own and federated).
  getBundle(trustDomain: string): Promise<StoredBundle | undefined>;
  /**
   * Inserts or replaces the bundle. Throws failed_precondition unless `sequence` is greater than the stored one
   * (Bundle §4: spiffe_sequence increases on every content change), and, with `replaces`, aborted unless what is
   * stored is still that sequence (null: still nothing), so a writer that read the bundle before a slow step (a
   * poll's fetch) cannot undo a change, or a delete, made meanwhile. With `relationship`, not_found unless a
   * federation relationship with the bundle's trust domain is stored: a poll of one made over the admin API stores
   * nothing once the relationship is deleted, however late its store comes.
   */
  setBundle(bundle: StoredBundle, options?: BundleWriteGuard & { relationship?: boolean }): Promise<void>;
  /** Ordered by trust domain. */
  listBundles(): Promise<StoredBundle[]>;
  /**
   * Deletes a federated bundle; throws not_found. While entries federate with the trust domain, `restrict` (SPIRE's
   * default mode) throws failed_precondition and `dissociate` takes the trust domain out of those entries in the same
   * transaction (under the transaction's new revision). Returns how many entries were dissociated. Refusing to delete
   * the own trust domain's bundle is the caller's job.
   */
  deleteBundle(trustDomain: string, mode?: BundleDeleteMode): Promise<number>;

  // Federation relationships made through the admin API (the config file's federates_with is not stored).
  /**
   * Throws already_exists when the trust domain has one. `seed`, when given, is stored as the trust domain's bundle
   * in the same transaction (refused as setBundle refuses it, `replaces` included).
   */
  createFederationRelationship(relationship: StoredRelationship, seed?: { bundle: StoredBundle } & BundleWriteGuard): Promise<void>;
  /**
   * Replaces endpoint URL, profile and endpoint SPIFFE ID (createdAt is kept); throws not_found. `seed`, when given,
   * is stored as the trust domain's bundle in the same transaction (refused as setBundle refuses it, `replaces`
   * included), so an update refused stores nothing.
   */
  updateFederationRelationship(relationship: StoredRelationship, seed?: { bundle: StoredBundle } & BundleWriteGuard): Promise<StoredRelationship>;
  /**
   * Throws not_found; failed_precondition while entries federate with the trust domain and no bundle of it is stored
   * (they would federate with nothing). The trust domain's bundle stays stored. Returns what was deleted.
   */
  deleteFederationRelationship(trustDomain: string): Promise<StoredRelationship>;
  /** Ordered by trust domain. */
  listFederationRelationships(): Promise<StoredRelationship[]>;

  // CA journal.
  /** Throws already_exists for a reused id. */
  addCaRecord(record: CaRecord): Promise<void>;
  /** Ordered by createdAt, then id. */
  listCaRecords(filter?: CaRecordFilter): Promise<CaRecord[]>;
  /** Throws not_found. */
  setCaRecordState(id: string, state: CaState): Promise<void>;
  /**
   * The CA manager's transaction: adds records, switches states (prepared→active, active→old), removes records and
   * stores the own bundle, all in one transaction. `bundle.sequence` equal to the stored one means "bundle unchanged"
   * (its content must then be identical); lower is refused. Throws not_found for a state change of an unknown id;
   * nothing is written then.
   */
  commitCaChange(change: CaJournalChange, bundle?: StoredBundle): Promise<void>;
  /** Every root ever revoked (since schema version 7), ordered by revocation time, then id. */
  listRevokedRoots(): Promise<RevokedRootRecord[]>;
  /** Every JWT key ever revoked (since schema version 9), ordered by revocation time, then id. */
  listRevokedJwtKeys(): Promise<RevokedJwtKeyRecord[]>;

  /** Closes the database. Idempotent. */
  close(): Promise<void>;
}

/** A registration entry (SPIFFE-ID §2; workload identity registered by an operator). Times are ms since the epoch. */
export interface RegistrationEntry {
  /** Random, assigned by the datastore: 'e-' + 16 hex digits. */
  id: string;
  spiffeId: string;
  parentId: string;
  /** Sorted by type then value (code-unit order), no duplicates. */
  selectors: Selector[];
  x509SvidTtlSeconds: number;
  jwtSvidTtlSeconds: number;
  dnsNames: string[];
  hint: string;
  /** Bare trust domain names. */
  federatesWith: string[];
  admin: boolean;
  downstream: boolean;
  /** The change-feed revision of this entry's last change. */
  revision: number;
  createdAt: number;
  updatedAt: number;
}

/** An entry to create; `id` may be given (restore, import), otherwise the datastore picks one. */
export type NewEntry = Omit<RegistrationEntry, 'id' | 'revision' | 'createdAt' | 'updatedAt'> & { id?: string };

export type EntryPatch = Partial<Omit<NewEntry, 'id'>>;

/**
 * Selector matching, SPIRE's semantics: exact = the entry's selector set equals the given set; subset = every entry
 * selector is among the given ones (what a workload with these selectors matches); superset = the entry has all the
 * given selectors (and maybe more); any = the entry has at least one of them.
 */
export type SelectorMatch = 'exact' | 'subset' | 'superset' | 'any';

export interface EntryFilter {
  spiffeId?: string | undefined;
  parentId?: string | undefined;
  selectors?: { match: SelectorMatch; selectors: Selector[] } | undefined;
  /** Bare trust domain names, matched against the entry's federates_with as selectors are (SelectorMatch). */
  federatesWith?: { match: SelectorMatch; trustDomains: string[] } | undefined;
  hint?: string | undefined;
  /** true: only entries marked downstream; absent: either. */
  downstream?: true | undefined;
  /** Maximum entries per page; absent or 0 = no limit. */
  pageSize?: number | undefined;
  /** The nextPageToken of the previous page. */
  pageToken?: string | undefined;
}

export interface EntryPage {
  entries: RegistrationEntry[];
  /** Present when more entries may follow. */
  nextPageToken?: string;
}

/** The answer of listEntryChangesSince: a delta to apply, or (`reset`) every entry, to load in place of the copy. */
export type EntryChanges = EntryDelta | EntryReset;

export interface EntryDelta {
  reset?: false;
  upserts: RegistrationEntry[];
  deletedIds: string[];
  revision: number;
}

/** The asked revision is older than the retained tombstones reach back: a delta could miss deletions. */
export interface EntryReset {
  reset: true;
  /** Every entry at `revision`, ordered by id. */
  entries: RegistrationEntry[];
  revision: number;
}

export interface Change {
  kind: 'entry' | 'bundle' | 'agent';
  revision: number;
  /**
   * For an 'agent' change, the agents whose rows it changed (evicted, banned, pruned): each connected agent re-reads
   * its own row only when named, instead of every one on every eviction. Undefined: any agent may have changed.
   */
  agentIds?: readonly string[];
}

export type ChangeListener = (change: Change) => void;

/** What deleting a federated bundle does to the entries that federate with its trust domain (SPIRE's modes). */
export type BundleDeleteMode = 'restrict' | 'dissociate';
export const BUNDLE_DELETE_MODES: readonly BundleDeleteMode[] = ['restrict', 'dissociate'];

/** A join token as stored: the value itself is never stored, only its SHA-256 (hex). */
export interface JoinToken {
  tokenHash: string;
  datacenter: string;
  selectors: Selector[];
  expiresAt: number;
  createdAt: number;
}

export interface NewJoinToken {
  /** The secret value handed to the operator; hashed before it reaches the database. */
  token: string;
  datacenter: string;
  selectors: Selector[];
  expiresAt: number;
  createdAt: number;
}

export interface AttestedAgent {
  spiffeId: string;
  datacenter: string;
  selectors: Selector[];
  /** Hex serial of the agent's current SVID. */
  certSerial: string;
  certNotAfter: number;
  /** Serial of the SVID before the last renewal: still valid until it expires. */
  previousCertSerial?: string;
  /**
   * CA journal ID of the intermediate that signed the current SVID; absent for agents that have not renewed since
   * the server started recording it (unknown).
   */
  certIssuerId?: string;
  attestedAt: number;
  updatedAt: number;
  banned: boolean;
  /** The meshid version the agent last reported (meshid-version.ts); absent until it reports one. */
  agentVersion?: string;
}

export type NewAgent = AttestedAgent;

/** A trust bundle (Bundle §4): X.509 authorities as DER, JWT authorities as SPKI PEM. */
export interface StoredBundle {
  /** Bare trust domain name. */
  trustDomain: string;
  x509Authorities: Buffer[];
  jwtAuthorities: Array<{ kid: string; publicKeyPem: string; notAfter: number }>;
  /** spiffe_sequence: increases on every content change. */
  sequence: number;
  updatedAt: number;
}

/** A bundle write over what its writer read: aborted unless the stored bundle is still at `replaces` (null: none stored). */
export interface BundleWriteGuard {
  replaces: number | null;
}

/** Where a federated trust domain's bundle is fetched (Bundle §5), as the admin API made it. Times are ms. */
export interface StoredRelationship {
  /** Bare trust domain name. */
  trustDomain: string;
  bundleEndpointUrl: string;
  profile: 'https_spiffe' | 'https_web';
  /** https_spiffe only. */
  endpointSpiffeId: string | undefined;
  createdAt: number;
  updatedAt: number;
}

export type { CaRecord, CaJournalChange, RevokedJwtKeyRecord, RevokedRootRecord } from '../ca/ca-journal.js';
export type CaKind = AuthorityKind;
export type CaState = AuthorityState;

export interface CaRecordFilter {
  kind?: CaKind;
  datacenter?: string;
  state?: CaState;
}
