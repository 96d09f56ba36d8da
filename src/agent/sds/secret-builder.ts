import { createHash } from 'node:crypto';
import { internal, invalidArgument } from '../../common/errors.js';
import { packAny, typeUrl, type AnyMessage } from '../../common/grpc/proto.js';
import { certificatesToPem, toPem } from '../../common/x509/pem.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { ValidationMode } from './node-validation-mode.js';
import type { SdsResource } from './resource-names.js';

/**
 * Envoy Secret messages for resolved SDS resources (SPEC-NOTES §9, §14.4), and the content-derived per-resource
 * versions that streams compare to decide what to send.
 */

export const SECRET_TYPE_NAME = 'envoy.extensions.transport_sockets.tls.v3.Secret';
/** The one type URL SDS serves, on responses and on every resource (SPEC-NOTES §1, §9). */
export const SECRET_TYPE_URL = typeUrl(SECRET_TYPE_NAME);
/** Envoy selects its certificate validator by this name (SPEC-NOTES §9, §13). */
export const SPIFFE_VALIDATOR_NAME = 'envoy.tls.cert_validator.spiffe';
export const SPIFFE_VALIDATOR_CONFIG_TYPE_NAME = 'envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';

/** The PEM bytes Envoy reads from an inline DataSource: SDS carries PEM, never DER (SPEC-NOTES §1). */
function inlinePem(pem: string): { inline_bytes: Buffer } {
  return { inline_bytes: Buffer.from(pem, 'ascii') };
}

function rootsPem(bundles: readonly TrustBundle[]): string {
  return bundles.map((b) => certificatesToPem(b.x509Authorities)).join('');
}

/**
 * The Secret for `name` as google.protobuf.Any, ready for DiscoveryResponse.resources or Resource.resource:
 * - tls_certificate: `certificate_chain` = PEM leaf then intermediates (no root), `private_key` = PEM PKCS#8, both
 *   inline_bytes, no password (SPEC-NOTES §9);
 * - validation_context, mode `spiffe`: `custom_validator_config` named `envoy.tls.cert_validator.spiffe` holding a
 *   SPIFFECertValidatorConfig with one trust domain per bundle (bare name, inline PEM roots);
 * - validation_context, mode `trusted_ca`: `trusted_ca` = inline PEM of the one trust domain's roots. Never of more
 *   than one: in one `trusted_ca` a federated root would vouch for every trust domain's IDs (resolveResourceName
 *   does not resolve `ALL` in this mode; this throws internal if something ever asks).
 * `Secret.name` is `name` byte-for-byte, so an alias comes back under the alias.
 */
export function buildSecret(name: string, resource: SdsResource, mode: ValidationMode): AnyMessage {
  if (resource.kind === 'tls_certificate') {
    return packAny(SECRET_TYPE_NAME, {
      name,
      tls_certificate: {
        certificate_chain: inlinePem(certificatesToPem(resource.svid.chain)),
        private_key: inlinePem(toPem('PRIVATE KEY', resource.svid.privateKey)),
      },
    });
  }
  if (mode === 'trusted_ca') {
    const count = resource.bundles.length;
    if (count !== 1) throw internal(`refusing to merge ${count} trust domains into one trusted_ca`);
    return packAny(SECRET_TYPE_NAME, { name, validation_context: { trusted_ca: inlinePem(rootsPem(resource.bundles)) } });
  }
  const config = packAny(SPIFFE_VALIDATOR_CONFIG_TYPE_NAME, {
    trust_domains: resource.bundles.map((b) => ({ name: b.trustDomain, trust_bundle: inlinePem(rootsPem([b])) })),
  });
  return packAny(SECRET_TYPE_NAME, {
    name,
    validation_context: { custom_validator_config: { name: SPIFFE_VALIDATOR_NAME, typed_config: config } },
  });
}

/** Length-prefixed parts, so that no two different part lists hash alike. */
function digest(parts: readonly (string | Buffer)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) {
    const bytes = typeof part === 'string' ? Buffer.from(part, 'utf8') : part;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    hash.update(length).update(bytes);
  }
  return hash.digest('hex').slice(0, 16);
}

/**
 * A version derived from the resource's content only, so the same content has the same version on every stream and
 * across reconnects (what makes DeltaDiscoveryRequest.initial_resource_versions useful, SPEC-NOTES §11). The secret
 * name is not part of it: versions are per resource. An SVID's version covers its public chain only — the private
 * key changes with the leaf, and no digest of key material leaves the agent.
 */
export function resourceVersion(resource: SdsResource, mode: ValidationMode): string {
  if (resource.kind === 'tls_certificate') return digest(['tls_certificate', ...resource.svid.chain]);
  const parts: (string | Buffer)[] = ['validation_context', mode];
  for (const b of resource.bundles) parts.push(b.trustDomain, String(b.x509Authorities.length), ...b.x509Authorities);
  return digest(parts);
}

/**
 * A version for a whole set of name → version pairs: DiscoveryResponse.version_info of a SotW or Fetch response, and
 * DeltaDiscoveryResponse.system_version_info. Never empty (SPEC-NOTES §10).
 */
export function stateVersion(versions: ReadonlyMap<string, string>): string {
  const names = [...versions.keys()].sort();
  return digest(names.flatMap((n) => [n, versions.get(n) ?? '']));
}

/**
 * SDS serves one type. The request's type_url is implicit for a single-type service, so an empty one is accepted;
 * any other type is a client mistake answered with INVALID_ARGUMENT, never with Secrets under a foreign type URL
 * (SPEC-NOTES §9).
 */
export function checkTypeUrl(requested: string | undefined): void {
  if (requested === undefined || requested === '' || requested === SECRET_TYPE_URL) return;
  throw invalidArgument(`type_url "${requested.slice(0, 256)}" is not served here; SecretDiscoveryService serves ${SECRET_TYPE_URL}`);
}
