import { invalidArgument } from '../../common/errors.js';
import { isJsonObject } from '../../common/json-object.js';
import { parseSpireJson } from './spire-json.js';
import type { ProtoFederationRelationship } from './admin-types.js';

/** One relationship of a file, as CreateFederationRelationship and UpdateFederationRelationship take it. */
export interface RelationshipRequest {
  relationship: ProtoFederationRelationship;
  bundle?: string;
  bundle_format?: string;
}

/** SPIRE's field names; Go's encoding/json, which SPIRE's files were written against, matches them in any case. */
const FIELDS = ['trustDomain', 'bundleEndpointURL', 'bundleEndpointProfile', 'endpointSPIFFEID', 'trustDomainBundle', 'trustDomainBundleFormat'] as const;
type Field = (typeof FIELDS)[number];

/**
 * `federation create|update --data FILE`: relationships in the JSON of `spire-server federation create -data`, so an
 * operator's SPIRE files load unchanged: `{"federationRelationships": [{"trustDomain", "bundleEndpointURL",
 * "bundleEndpointProfile", "endpointSPIFFEID", "trustDomainBundle", "trustDomainBundleFormat"}]}`. The bundle is, as
 * in SPIRE, PEM in a JSON string when the format is "pem" (SPIRE's default) and the SPIFFE bundle document itself when
 * it is "spiffe"; a document given without a format is taken as "spiffe" rather than refused. A field meshid does not
 * know, or one given twice, is refused by name rather than dropped: a relationship that silently lost a setting would
 * be another relationship.
 */
export function parseRelationshipFile(text: string, source: string): RelationshipRequest[] {
  const doc = parseSpireJson(text, source);
  const list = isJsonObject(doc) ? Object.entries(doc).find(([k]) => k.toLowerCase() === 'federationrelationships')?.[1] : undefined;
  if (!Array.isArray(list)) {
    throw invalidArgument(`${source} must be a JSON object with a "federationRelationships" array, as spire-server federation create -data reads`);
  }
  return list.map((raw, i) => relationshipOf(raw, `${source}: relationship ${i + 1}`));
}

function relationshipOf(raw: unknown, where: string): RelationshipRequest {
  if (!isJsonObject(raw)) throw invalidArgument(`${where} is not a JSON object`);
  const fields = new Map<Field, unknown>();
  for (const [key, value] of Object.entries(raw)) {
    const name = FIELDS.find((f) => f.toLowerCase() === key.toLowerCase());
    if (name === undefined) throw invalidArgument(`${where}: "${key}" is not a federation relationship field (known: ${FIELDS.join(', ')}); remove it`);
    fields.set(name, value);
  }
  const text = (name: Field): string | undefined => {
    const value = fields.get(name);
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') throw invalidArgument(`${where}: "${name}" must be a string`);
    return value;
  };
  // As spire-server's CLI: these two name the relationship; the server checks the rest, as it does the flags'.
  const trustDomain = text('trustDomain');
  if (trustDomain === undefined) throw invalidArgument(`${where}: "trustDomain" is required`);
  const url = text('bundleEndpointURL');
  if (url === undefined) throw invalidArgument(`${where} (${trustDomain}): "bundleEndpointURL" is required`);
  const profile = text('bundleEndpointProfile');
  const endpointId = text('endpointSPIFFEID');
  const request: RelationshipRequest = {
    relationship: {
      trust_domain: trustDomain,
      bundle_endpoint_url: url,
      ...(profile !== undefined ? { bundle_endpoint_profile: profile } : {}),
      ...(endpointId !== undefined ? { endpoint_spiffe_id: endpointId } : {}),
    },
  };
  const format = text('trustDomainBundleFormat');
  if (format !== undefined && format !== 'pem' && format !== 'spiffe') throw invalidArgument(`${where} (${trustDomain}): "trustDomainBundleFormat" must be pem or spiffe`);
  const bundle = fields.get('trustDomainBundle');
  if (bundle === undefined || bundle === null) {
    if (format !== undefined) throw invalidArgument(`${where} (${trustDomain}): "trustDomainBundleFormat" goes with "trustDomainBundle"`);
  } else if (isJsonObject(bundle)) {
    if (format === 'pem') throw invalidArgument(`${where} (${trustDomain}): "trustDomainBundle" is a SPIFFE bundle document (a JSON object), but "trustDomainBundleFormat" says pem`);
    request.bundle = JSON.stringify(bundle);
    request.bundle_format = 'spiffe';
  } else if (typeof bundle === 'string') {
    request.bundle = bundle;
    request.bundle_format = format ?? 'pem';
  } else {
    throw invalidArgument(`${where} (${trustDomain}): "trustDomainBundle" must be PEM in a string or a SPIFFE bundle document`);
  }
  return request;
}
