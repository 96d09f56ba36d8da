import { invalidArgument } from '../../common/errors.js';

/**
 * How the agent's SDS service names and shapes secrets (SPEC-NOTES §9). Defaults are SPIRE's, so Envoy bootstraps
 * written for SPIRE work unchanged: `default`, `ROOTCA`, `ALL`, SPIFFE validator on.
 */
export interface SdsOptions {
  /** Resource name of the caller's default X.509-SVID (svids[0]); SPIRE's `default_svid_name`. */
  defaultSvidName?: string;
  /** Resource name of the own trust domain's validation context; SPIRE's `default_bundle_name`. */
  defaultBundleName?: string;
  /** Resource name of own + federated trust domains in one validation context; SPIRE's `default_all_bundles_name`. */
  defaultAllBundlesName?: string;
  /** Send plain `trusted_ca` instead of the SPIFFE cert validator to every Envoy (SPEC-NOTES §9). */
  disableSpiffeCertValidation?: boolean;
  /**
   * Callers no entry matches get the own trust domain's validation contexts instead of PERMISSION_DENIED: Envoys that
   * only verify peers. The agent's `allow_unauthenticated_verifiers`, which opens the Workload API's bundle RPCs too.
   */
  allowUnauthenticatedVerifiers?: boolean;
}

/** SdsOptions with every default applied and checked; frozen. */
export interface ResolvedSdsOptions {
  readonly defaultSvidName: string;
  readonly defaultBundleName: string;
  readonly defaultAllBundlesName: string;
  readonly disableSpiffeCertValidation: boolean;
  readonly allowUnauthenticatedVerifiers: boolean;
}

/** The longest resource name accepted: SPIFFE IDs go up to 2048 bytes (SPEC-NOTES §2), aliases are short. */
export const MAX_RESOURCE_NAME_BYTES = 2048;

/** xDS's explicit wildcard name (xds_protocol "How the client specifies what resources to return"). */
export const WILDCARD_NAME = '*';

/**
 * Applies defaults and rejects options that would make names ambiguous: aliases must be non-empty, distinct, not
 * SPIFFE IDs (those are resolved as identities or trust domains) and not the wildcard. Throws invalid_argument.
 */
export function resolveSdsOptions(raw: SdsOptions = {}): ResolvedSdsOptions {
  const resolved: ResolvedSdsOptions = {
    defaultSvidName: raw.defaultSvidName ?? 'default',
    defaultBundleName: raw.defaultBundleName ?? 'ROOTCA',
    defaultAllBundlesName: raw.defaultAllBundlesName ?? 'ALL',
    disableSpiffeCertValidation: raw.disableSpiffeCertValidation ?? false,
    allowUnauthenticatedVerifiers: raw.allowUnauthenticatedVerifiers ?? false,
  };
  const aliases = {
    defaultSvidName: resolved.defaultSvidName,
    defaultBundleName: resolved.defaultBundleName,
    defaultAllBundlesName: resolved.defaultAllBundlesName,
  };
  for (const [key, name] of Object.entries(aliases)) {
    if (name === '') throw invalidArgument(`sds.${key} must not be empty`);
    if (name.startsWith('spiffe://')) throw invalidArgument(`sds.${key} "${name}" must not be a SPIFFE ID`);
    if (name === WILDCARD_NAME) throw invalidArgument(`sds.${key} must not be the wildcard "*"`);
    if (Buffer.byteLength(name) > MAX_RESOURCE_NAME_BYTES) throw invalidArgument(`sds.${key} is longer than ${MAX_RESOURCE_NAME_BYTES} bytes`);
  }
  if (new Set(Object.values(aliases)).size !== 3) {
    throw invalidArgument('sds.defaultSvidName, sds.defaultBundleName and sds.defaultAllBundlesName must be distinct');
  }
  return Object.freeze(resolved);
}
