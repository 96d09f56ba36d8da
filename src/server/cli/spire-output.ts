/**
 * The `--output json` documents of the commands meshid-server shares with spire-server, in spire-server's shapes: the
 * protojson (proto field names, every field present, int64 as a string, bytes as base64) of the spire-api-sdk message
 * each spire-server command prints (spire/api/types/*.proto, spire/api/server/<service>/v1/*.proto). A script written
 * against spire-server (`jq '.entries[].spiffe_id.path'`) reads meshid's output unchanged. meshid-only facts (an
 * agent's datacenter, a federation poll's last error) stay in the pretty output: a field SPIRE's shape lacks would be
 * one no SPIRE script knows to read.
 */
import type { ProtoAgent, ProtoBundle, ProtoEntry, ProtoFederationRelationship } from './admin-types.js';
import { MeshidError, type ErrorCode } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { renderJson, type CliIo } from '../../common/cli/output.js';

/** protojson writes int64 and uint64 as decimal strings (a JSON number loses precision past 2^53). */
export const int64 = (n: number | undefined): string => String(n ?? 0);

/** spire.api.types.SPIFFEID. */
export interface SpireSpiffeId {
  trust_domain: string;
  path: string;
}

/**
 * `spiffe://td/path` as SPIRE's {trust_domain, path}. Lenient, since what is printed may be an entry the server
 * refused for its ID: the text after the scheme up to the first "/" is the trust domain, anything else the path.
 */
export function spireSpiffeId(id: string | undefined): SpireSpiffeId {
  const value = id ?? '';
  if (!value.startsWith('spiffe://')) return { trust_domain: '', path: value };
  const rest = value.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash === -1 ? { trust_domain: rest, path: '' } : { trust_domain: rest.slice(0, slash), path: rest.slice(slash) };
}

/** spire.api.types.Status; SPIRE's servers say "OK" for a success (commonapi.OK()). */
export function spireStatus(code: number | undefined, message: string | undefined): { code: number; message: string } {
  const c = code ?? 0;
  return { code: c, message: c === 0 && !message ? 'OK' : (message ?? '') };
}

/** Refusals of the one item a Batch… command sends, which spire-server reports in the item's result. */
const ITEM_REFUSALS: ReadonlySet<ErrorCode> = new Set(['invalid_argument', 'already_exists', 'not_found', 'failed_precondition', 'aborted']);

/**
 * The admin call of a command that prints a Batch…Response for one item (bundle set|delete, federation delete): with
 * --output json a refusal of the item is printed as its result, `{status, ...fields}`, as entry and federation create
 * print theirs and spire-server prints every result, before the error line; a script reads the code either way.
 */
export async function refusalAsBatchResult<T>(json: boolean, io: CliIo, fields: Record<string, unknown>, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (json && err instanceof MeshidError && ITEM_REFUSALS.has(err.code)) {
      io.stdout.write(renderJson({ results: [{ status: spireStatus(toServiceError(err).code, err.message), ...fields }] }));
    }
    throw err;
  }
}

const selectors = (list: ProtoEntry['selectors']): Array<{ type: string; value: string }> =>
  (list ?? []).map((s) => ({ type: s.type ?? '', value: s.value ?? '' }));

/**
 * spire.api.types.Entry. meshid keeps no entry expiry and no stored SVIDs (`entry create -entryExpiry`, `-storeSVID`
 * are refused), so expires_at is "0" and store_svid false, as SPIRE shows an entry without them.
 */
export function spireEntry(e: ProtoEntry): Record<string, unknown> {
  return {
    id: e.id ?? '',
    spiffe_id: spireSpiffeId(e.spiffe_id),
    parent_id: spireSpiffeId(e.parent_id),
    selectors: selectors(e.selectors),
    x509_svid_ttl: e.x509_svid_ttl ?? 0,
    federates_with: e.federates_with ?? [],
    admin: e.admin ?? false,
    downstream: e.downstream ?? false,
    expires_at: '0',
    dns_names: e.dns_names ?? [],
    revision_number: int64(e.revision),
    store_svid: false,
    jwt_svid_ttl: e.jwt_svid_ttl ?? 0,
    hint: e.hint ?? '',
    created_at: int64(e.created_at),
  };
}

/** The agent attestation type of every meshid agent, in SPIRE's name for it. */
export const JOIN_TOKEN_ATTESTATION = 'join_token';

/**
 * spire.api.types.Agent. The serial is decimal, as SPIRE prints a certificate's (Go's big.Int String); meshid stores
 * it in hex. A join token is spent once, so no meshid agent can re-attest by itself (can_reattest false, as SPIRE's
 * join_token agents). agent_version is empty for an agent that has not reported one, as SPIRE's is.
 */
export function spireAgent(a: ProtoAgent): Record<string, unknown> {
  const serial = a.cert_serial ?? '';
  return {
    id: spireSpiffeId(a.spiffe_id),
    attestation_type: JOIN_TOKEN_ATTESTATION,
    x509svid_serial_number: /^[0-9a-f]+$/i.test(serial) ? BigInt(`0x${serial}`).toString(10) : serial,
    x509svid_expires_at: int64(a.cert_expires_at),
    selectors: selectors(a.selectors),
    banned: a.banned ?? false,
    can_reattest: false,
    agent_version: a.agent_version ?? '',
  };
}

/**
 * spire.api.types.Bundle. `tainted` marks roots whose key `ca taint` took out of use (by their DER); meshid drops a
 * tainted JWT key from the bundle at once, so a listed one never is. meshid publishes no WIT keys.
 */
export function spireBundle(b: ProtoBundle, isTainted: (der: Buffer) => boolean = () => false): Record<string, unknown> {
  return {
    trust_domain: b.trust_domain ?? '',
    x509_authorities: (b.x509_authorities ?? []).map((der) => ({ asn1: der, tainted: isTainted(der) })),
    jwt_authorities: (b.jwt_authorities ?? []).map((k) => ({
      public_key: k.public_key ?? Buffer.alloc(0),
      key_id: k.kid ?? '',
      expires_at: int64(k.expires_at),
      tainted: false,
    })),
    refresh_hint: int64(b.refresh_hint),
    sequence_number: int64(b.sequence),
    wit_authorities: [],
  };
}

/**
 * spire.api.types.FederationRelationship: the profile is a oneof, so exactly one of https_web and https_spiffe is
 * present; trust_domain_bundle only when a bundle of the trust domain is stored (SPIRE leaves it out otherwise).
 */
export function spireRelationship(r: ProtoFederationRelationship, bundle?: ProtoBundle): Record<string, unknown> {
  return {
    trust_domain: r.trust_domain ?? '',
    bundle_endpoint_url: r.bundle_endpoint_url ?? '',
    ...(r.bundle_endpoint_profile === 'https_spiffe'
      ? { https_spiffe: { endpoint_spiffe_id: r.endpoint_spiffe_id ?? '' } }
      : r.bundle_endpoint_profile === 'https_web'
        ? { https_web: {} }
        : {}),
    ...(bundle !== undefined ? { trust_domain_bundle: spireBundle(bundle) } : {}),
  };
}
