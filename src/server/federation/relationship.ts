import { invalidArgument } from '../../common/errors.js';
import { isJsonObject } from '../../common/json-object.js';
import { closestConfigKey } from '../../common/config-file.js';
import { parseSpiffeId, parseTrustDomain, parseWorkloadId } from '../../common/spiffe/spiffe-id.js';

export type BundleEndpointProfile = 'https_spiffe' | 'https_web';

/**
 * A trust domain this server federates with and where its bundle is fetched (SPIRE's `federates_with` block;
 * Trust Domain and Bundle §5): https_spiffe authenticates the endpoint by `endpointSpiffeId` against the bundle
 * stored for the endpoint ID's trust domain (usually the one federated with; §5.2.2.2 lets another domain, say a
 * hosting provider's, serve it), https_web by the host's web PKI roots and the URL's host name.
 */
export interface FederationRelationship {
  readonly trustDomain: string;
  readonly bundleEndpointUrl: string;
  readonly profile: BundleEndpointProfile;
  /** https_spiffe only: the SPIFFE ID the endpoint's SVID must carry. */
  readonly endpointSpiffeId: string | undefined;
}

/** The trust domain an ID names, for parseWorkloadId to check the rest (and say what is wrong, if it does not parse). */
function ownDomainOf(id: string): string {
  try {
    return parseSpiffeId(id).trustDomain;
  } catch {
    return '';
  }
}

/** https_spiffe: the trust domain whose stored bundle authenticates the endpoint (that of its SPIFFE ID). */
export function endpointTrustDomain(rel: FederationRelationship): string {
  return rel.endpointSpiffeId === undefined ? rel.trustDomain : parseSpiffeId(rel.endpointSpiffeId).trustDomain;
}

/** As in the config file: `federates_with: { "<trust domain>": { bundle_endpoint_url, ... } }`. */
export interface RawRelationship {
  bundle_endpoint_url?: string;
  bundle_endpoint_profile?: string;
  endpoint_spiffe_id?: string;
}

const KNOWN_KEYS = new Set(['bundle_endpoint_url', 'bundle_endpoint_profile', 'endpoint_spiffe_id']);
const PROFILES: readonly BundleEndpointProfile[] = ['https_spiffe', 'https_web'];

/** Checks the config's `federates_with` and compiles it; throws MeshidError(invalid_argument) naming what to change. */
export function compileRelationships(raw: unknown, ownTrustDomain: string): readonly FederationRelationship[] {
  if (raw === undefined) return Object.freeze([]);
  if (!isJsonObject(raw)) throw invalidArgument('federates_with must be an object keyed by trust domain');
  return Object.freeze(Object.entries(raw).map(([name, value]) => compileRelationship(name, value, ownTrustDomain)));
}

/** Refuses a key a relationship does not have, naming it with `where` and the closest known key. */
export function checkRelationshipKeys(value: Readonly<Record<string, unknown>>, where: string): void {
  for (const key of Object.keys(value)) {
    if (!KNOWN_KEYS.has(key)) {
      const close = closestConfigKey(key, [...KNOWN_KEYS], value);
      throw invalidArgument(`${where}: unknown key "${key}" (${close !== undefined ? `did you mean "${close}"?` : `known: ${[...KNOWN_KEYS].join(', ')}`})`);
    }
  }
}

/**
 * One relationship: `name` its trust domain, `value` its settings as in the config file; `where` names it in errors
 * (the config's `federates_with "partner.org"`, or the admin API's relationship).
 */
export function compileRelationship(name: string, value: unknown, ownTrustDomain: string, where = `federates_with "${name}"`): FederationRelationship {
  const trustDomain = parseTrustDomain(name);
  if (trustDomain === ownTrustDomain) throw invalidArgument(`${where}: that is this server's own trust domain`);
  if (!isJsonObject(value)) throw invalidArgument(`${where} must be an object with bundle_endpoint_url and bundle_endpoint_profile`);
  checkRelationshipKeys(value, where);
  const r = value as RawRelationship;
  if (typeof r.bundle_endpoint_url !== 'string') throw invalidArgument(`${where}: bundle_endpoint_url is required`);
  let url: URL;
  try {
    url = new URL(r.bundle_endpoint_url);
  } catch {
    throw invalidArgument(`${where}: bundle_endpoint_url "${r.bundle_endpoint_url}" is not a URL`);
  }
  if (url.protocol !== 'https:') throw invalidArgument(`${where}: bundle_endpoint_url must be an https:// URL (Bundle §5)`);
  if (url.username !== '' || url.password !== '') throw invalidArgument(`${where}: bundle_endpoint_url must not carry credentials`);
  const profile = r.bundle_endpoint_profile as BundleEndpointProfile;
  if (!PROFILES.includes(profile)) throw invalidArgument(`${where}: bundle_endpoint_profile must be one of ${PROFILES.join(', ')}`);
  let endpointSpiffeId: string | undefined;
  if (profile === 'https_spiffe') {
    if (typeof r.endpoint_spiffe_id !== 'string') {
      throw invalidArgument(`${where}: https_spiffe needs endpoint_spiffe_id, the SPIFFE ID of the endpoint's server`);
    }
    // Any trust domain's: the endpoint may be hosted by another (Bundle §5.2.2.2), authenticated by that one's bundle.
    endpointSpiffeId = parseWorkloadId(r.endpoint_spiffe_id, ownDomainOf(r.endpoint_spiffe_id), `${where}: endpoint_spiffe_id`).id;
  } else if (r.endpoint_spiffe_id !== undefined) {
    throw invalidArgument(`${where}: endpoint_spiffe_id is for https_spiffe; https_web authenticates the URL's host name`);
  }
  return Object.freeze({ trustDomain, bundleEndpointUrl: url.href, profile, endpointSpiffeId });
}
