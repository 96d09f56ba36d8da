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

export interface CaJournalChange {
  add?: CaRecord[];
  setState?: Array<{ id: string; state: AuthorityState }>;
  remove?: string[];
}

export interface CaJournalStore {
  listCaRecords(): Promise<CaRecord[]>;
  getBundle(trustDomain: string): Promise<OwnBundleRecord | undefined>;
  /** Applies the journal change and stores the bundle in one transaction. */
  commitCaChange(change: CaJournalChange, bundle: OwnBundleRecord): Promise<void>;
}
