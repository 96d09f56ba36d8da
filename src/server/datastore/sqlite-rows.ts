import type {
  AttestedAgent, CaKind, CaRecord, CaState, JoinToken, RegistrationEntry, RevokedJwtKeyRecord, RevokedRootRecord, Selector, StoredBundle, StoredRelationship,
} from './datastore.js';
import { internal } from '../../common/errors.js';
import { splitConcatenatedDer } from '../../common/x509/pem.js';

/**
 * Rows as the driver returns them (snake_case columns, 0/1 booleans, JSON lists in TEXT) and their conversion to the
 * domain types. The column lists are spelled out so a later migration adding a column changes no query's result shape.
 */

export const ENTRY_COLUMNS =
  'e.id, e.spiffe_id, e.parent_id, e.identity_hash, e.selectors, e.x509_svid_ttl_seconds, e.jwt_svid_ttl_seconds, e.dns_names, ' +
  'e.hint, e.federates_with, e.admin, e.downstream, e.revision, e.created_at, e.updated_at';

export interface EntryRow {
  id: string;
  spiffe_id: string;
  parent_id: string;
  identity_hash: string;
  selectors: string;
  x509_svid_ttl_seconds: number;
  jwt_svid_ttl_seconds: number;
  dns_names: string;
  hint: string;
  federates_with: string;
  admin: number;
  downstream: number;
  revision: number;
  created_at: number;
  updated_at: number;
}

export function entryFromRow(r: EntryRow): RegistrationEntry {
  return {
    id: r.id,
    spiffeId: r.spiffe_id,
    parentId: r.parent_id,
    selectors: JSON.parse(r.selectors) as Selector[],
    x509SvidTtlSeconds: r.x509_svid_ttl_seconds,
    jwtSvidTtlSeconds: r.jwt_svid_ttl_seconds,
    dnsNames: JSON.parse(r.dns_names) as string[],
    hint: r.hint,
    federatesWith: JSON.parse(r.federates_with) as string[],
    admin: r.admin === 1,
    downstream: r.downstream === 1,
    revision: r.revision,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/**
 * The columns of the reads of many entries (listAllEntries, and the change feed's reset and delta), read with the
 * statements' raw() mode: an array of values per row rather than an object with fifteen named properties, which the
 * driver builds for every row (at 100,000 entries ~0.3 s of a ~1.4 s read). identity_hash is left out, as entryFromRow
 * leaves it.
 */
export const ENTRY_VALUE_COLUMNS =
  'e.id, e.spiffe_id, e.parent_id, e.selectors, e.x509_svid_ttl_seconds, e.jwt_svid_ttl_seconds, e.dns_names, ' +
  'e.hint, e.federates_with, e.admin, e.downstream, e.revision, e.created_at, e.updated_at';

export type EntryValues = [
  id: string, spiffeId: string, parentId: string, selectors: string, x509SvidTtlSeconds: number, jwtSvidTtlSeconds: number,
  dnsNames: string, hint: string, federatesWith: string, admin: number, downstream: number, revision: number, createdAt: number,
  updatedAt: number,
];

/** entryFromRow for a row of ENTRY_VALUE_COLUMNS: the same entry, its properties in the same order. */
export function entryFromValues(v: EntryValues): RegistrationEntry {
  return {
    id: v[0],
    spiffeId: v[1],
    parentId: v[2],
    selectors: JSON.parse(v[3]) as Selector[],
    x509SvidTtlSeconds: v[4],
    jwtSvidTtlSeconds: v[5],
    dnsNames: parseList(v[6]),
    hint: v[7],
    federatesWith: parseList(v[8]),
    admin: v[9] === 1,
    downstream: v[10] === 1,
    revision: v[11],
    createdAt: v[12],
    updatedAt: v[13],
  };
}

/** Most entries have no DNS names and federate with no one: '[]' is answered without the parser. */
function parseList(json: string): string[] {
  return json === '[]' ? [] : (JSON.parse(json) as string[]);
}

export const AGENT_COLUMNS =
  'spiffe_id, datacenter, selectors, cert_serial, cert_not_after, previous_cert_serial, attested_at, updated_at, banned, cert_issuer_id, ' +
  'agent_version';

export interface AgentRow {
  spiffe_id: string;
  datacenter: string;
  selectors: string;
  cert_serial: string;
  cert_not_after: number;
  previous_cert_serial: string | null;
  attested_at: number;
  updated_at: number;
  banned: number;
  cert_issuer_id: string | null;
  agent_version: string | null;
}

export function agentFromRow(r: AgentRow): AttestedAgent {
  const agent: AttestedAgent = {
    spiffeId: r.spiffe_id,
    datacenter: r.datacenter,
    selectors: JSON.parse(r.selectors) as Selector[],
    certSerial: r.cert_serial,
    certNotAfter: r.cert_not_after,
    attestedAt: r.attested_at,
    updatedAt: r.updated_at,
    banned: r.banned === 1,
  };
  if (r.previous_cert_serial !== null) agent.previousCertSerial = r.previous_cert_serial;
  if (r.cert_issuer_id !== null) agent.certIssuerId = r.cert_issuer_id;
  if (r.agent_version !== null) agent.agentVersion = r.agent_version;
  return agent;
}

export interface JoinTokenRow {
  token_hash: string;
  datacenter: string;
  selectors: string;
  expires_at: number;
  created_at: number;
}

export function joinTokenFromRow(r: JoinTokenRow): JoinToken {
  return {
    tokenHash: r.token_hash,
    datacenter: r.datacenter,
    selectors: JSON.parse(r.selectors) as Selector[],
    expiresAt: r.expires_at,
    createdAt: r.created_at,
  };
}

export const BUNDLE_COLUMNS = 'trust_domain, x509_authorities, jwt_authorities, sequence, updated_at';

export interface BundleRow {
  trust_domain: string;
  x509_authorities: string;
  jwt_authorities: string;
  sequence: number;
  updated_at: number;
}

export function bundleFromRow(r: BundleRow): StoredBundle {
  return {
    trustDomain: r.trust_domain,
    x509Authorities: (JSON.parse(r.x509_authorities) as string[]).map((b64) => Buffer.from(b64, 'base64')),
    jwtAuthorities: JSON.parse(r.jwt_authorities) as StoredBundle['jwtAuthorities'],
    sequence: r.sequence,
    updatedAt: r.updated_at,
  };
}

/** The bundle's content as stored (everything but sequence and time): equal strings mean equal bundles. */
export function bundleContentColumns(b: StoredBundle): { x509: string; jwt: string } {
  return {
    x509: JSON.stringify(b.x509Authorities.map((der) => Buffer.from(der).toString('base64'))),
    jwt: JSON.stringify(b.jwtAuthorities.map((k) => ({ kid: k.kid, publicKeyPem: k.publicKeyPem, notAfter: k.notAfter }))),
  };
}

export const CA_COLUMNS =
  'id, kind, datacenter, state, cert_der, public_key_pem, key_id, not_before, not_after, created_at, updated_at, upstream_chain, upstream_anchors, upstream_ca';

export interface CaRow {
  id: string;
  kind: string;
  datacenter: string;
  state: string;
  cert_der: Buffer | null;
  public_key_pem: string | null;
  key_id: string;
  not_before: number;
  not_after: number;
  created_at: number;
  updated_at: number;
  upstream_chain: Buffer | null;
  upstream_anchors: Buffer | null;
  upstream_ca: number | null;
}

export function caRecordFromRow(r: CaRow): CaRecord {
  const record: CaRecord = {
    id: r.id,
    kind: r.kind as CaKind,
    datacenter: r.datacenter,
    state: r.state as CaState,
    keyId: r.key_id,
    notBefore: r.not_before,
    notAfter: r.not_after,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
  if (r.cert_der !== null) record.certDer = r.cert_der;
  if (r.public_key_pem !== null) record.publicKeyPem = r.public_key_pem;
  if (r.upstream_chain !== null) record.upstreamChainDer = splitConcatenatedDer(r.upstream_chain);
  if (r.upstream_anchors !== null) record.upstreamAnchorsDer = splitConcatenatedDer(r.upstream_anchors);
  if (r.upstream_ca !== null) record.fromUpstreamCa = r.upstream_ca === 1;
  return record;
}

export const REVOKED_ROOT_COLUMNS = 'id, subject, cert_fingerprint, subject_key_id, anchors, revoked_at';

export interface RevokedRootRow {
  id: string;
  subject: string;
  cert_fingerprint: string;
  subject_key_id: string | null;
  anchors: Buffer;
  revoked_at: number;
}

export function revokedRootFromRow(r: RevokedRootRow): RevokedRootRecord {
  const record: RevokedRootRecord = {
    id: r.id,
    subject: r.subject,
    certFingerprint: r.cert_fingerprint,
    anchorsDer: splitConcatenatedDer(r.anchors),
    revokedAt: r.revoked_at,
  };
  if (r.subject_key_id !== null) record.subjectKeyId = r.subject_key_id;
  return record;
}

export const REVOKED_JWT_KEY_COLUMNS = 'id, key_id, revoked_at';

export interface RevokedJwtKeyRow {
  id: string;
  key_id: string;
  revoked_at: number;
}

export function revokedJwtKeyFromRow(r: RevokedJwtKeyRow): RevokedJwtKeyRecord {
  return { id: r.id, keyId: r.key_id, revokedAt: r.revoked_at };
}

export const RELATIONSHIP_COLUMNS = 'trust_domain, bundle_endpoint_url, bundle_endpoint_profile, endpoint_spiffe_id, created_at, updated_at';

export interface RelationshipRow {
  trust_domain: string;
  bundle_endpoint_url: string;
  bundle_endpoint_profile: string;
  endpoint_spiffe_id: string;
  created_at: number;
  updated_at: number;
}

export function relationshipFromRow(r: RelationshipRow): StoredRelationship {
  return {
    trustDomain: r.trust_domain,
    bundleEndpointUrl: r.bundle_endpoint_url,
    profile: relationshipProfile(r),
    endpointSpiffeId: r.endpoint_spiffe_id === '' ? undefined : r.endpoint_spiffe_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function relationshipProfile(r: RelationshipRow): StoredRelationship['profile'] {
  const p = r.bundle_endpoint_profile;
  if (p !== 'https_spiffe' && p !== 'https_web') throw internal(`federation relationship ${r.trust_domain}: stored profile "${p}" is unknown`);
  return p;
}

export function relationshipColumns(r: StoredRelationship): [string, string, string, string, number, number] {
  return [r.trustDomain, r.bundleEndpointUrl, r.profile, r.endpointSpiffeId ?? '', r.createdAt, r.updatedAt];
}
