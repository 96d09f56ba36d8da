/**
 * What the CA needs from the datastore: the journal of authorities (which root, intermediate and JWT key is
 * prepared / active / old per datacenter) and the own bundle, changed together in one transaction so the journal and
 * the published bundle always agree, even after kill -9.
 */
export type AuthorityKind = 'root' | 'intermediate' | 'jwt';
export type AuthorityState = 'prepared' | 'active' | 'old' | 'tainted';

export interface CaRecord {
  id: string;
  kind: AuthorityKind;
  /** '' for roots and JWT keys. */
  datacenter: string;
  state: AuthorityState;
  certDer?: Buffer | undefined;
  publicKeyPem?: string | undefined;
  /** Name of the key file in the key store (for JWT keys also the published `kid`). */
  keyId: string;
  notBefore: number;
  notAfter: number;
  createdAt: number;
  updatedAt: number;
  /** A root an upstream PKI issued: its issuers, nearest first, up to (not including) the PKI's roots. */
  upstreamChainDer?: Buffer[] | undefined;
  /** A root an upstream PKI issued: the PKI's roots it chains to, published while it lives. */
  upstreamAnchorsDer?: Buffer[] | undefined;
  /**
   * A root: whether it is an upstream CA (--upstream-ca-cert) the server copied the key of, rather than one meshid made.
   * Undefined for other kinds and for roots journaled before schema version 6 (rootFromUpstreamCa classifies those).
   */
  fromUpstreamCa?: boolean | undefined;
}

export interface OwnBundleRecord {
  trustDomain: string;
  x509Authorities: Buffer[];
  jwtAuthorities: Array<{ kid: string; publicKeyPem: string; notAfter: number }>;
  sequence: number;
  updatedAt: number;
}

/**
 * A root `ca revoke` took out of the journal, recorded in the revoke's own commit: once it has left, nothing else
 * remembers that its trust anchor (under an upstream PKI, the PKI's root) anchored a revoked CA, and a later start
 * whose --upstream-bundle lists that anchor again would publish it without a word.
 */
export interface RevokedRootRecord {
  /** Its CA journal ID. */
  id: string;
  subject: string;
  /** SHA-256 of the revoked root's certificate, hex. */
  certFingerprint: string;
  /** Hex; what agents match tainted authorities by. */
  subjectKeyId?: string | undefined;
  /** The trust anchors its chain ended at: the PKI root(s) of a CA an upstream PKI issued, else the root itself. */
  anchorsDer: Buffer[];
  revokedAt: number;
}

/**
 * A JWT key `ca revoke` took out of the journal, recorded in the revoke's own commit: a revoke sent again because its
 * answer was lost is told the key was revoked, and when, rather than that no such authority exists.
 */
export interface RevokedJwtKeyRecord {
  /** Its CA journal ID. */
  id: string;
  /** The `kid` it was published under. */
  keyId: string;
  revokedAt: number;
}

export interface CaJournalChange {
  add?: CaRecord[];
  setState?: Array<{ id: string; state: AuthorityState }>;
  remove?: string[];
  /** The roots this change revokes (they are in `remove` too). */
  revoked?: RevokedRootRecord[];
  /** The JWT keys this change revokes (they are in `remove` too). */
  revokedJwtKeys?: RevokedJwtKeyRecord[];
}

export interface CaJournalStore {
  listCaRecords(): Promise<CaRecord[]>;
  getBundle(trustDomain: string): Promise<OwnBundleRecord | undefined>;
  /** Applies the journal change and stores the bundle in one transaction. */
  commitCaChange(change: CaJournalChange, bundle: OwnBundleRecord): Promise<void>;
  /** Every root revoked since the journal began recording them (schema version 7), oldest first. */
  listRevokedRoots(): Promise<RevokedRootRecord[]>;
  /** Every JWT key revoked since the journal began recording them (schema version 9), oldest first. */
  listRevokedJwtKeys(): Promise<RevokedJwtKeyRecord[]>;
}
