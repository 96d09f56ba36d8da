import { fromStruct } from '../../common/grpc/proto.js';
import type { EnvoyNode } from './messages.js';
import type { ValidationMode } from './secret-builder.js';
import type { ResolvedSdsOptions } from './sds-options.js';

/** The node metadata key SPIRE reads to switch an Envoy to `trusted_ca` (SPEC-NOTES §9, §14.5). */
export const DISABLE_SPIFFE_VALIDATION_KEY = 'disable_spiffe_cert_validation';

/** Go's strconv.ParseBool spellings of true, so metadata written for SPIRE means the same here. */
const TRUE_STRINGS = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);

function isTrue(value: unknown): boolean {
  return value === true || (typeof value === 'string' && TRUE_STRINGS.has(value));
}

/** Envoy added the SPIFFE certificate validator in 1.18; older builds NACK a secret that names it. */
function predatesSpiffeValidator(node: EnvoyNode): boolean {
  const version = node.user_agent_build_version?.version;
  if (version === undefined) return false;
  const major = version.major_number ?? 0;
  const minor = version.minor_number ?? 0;
  return major < 1 || (major === 1 && minor < 18);
}

/**
 * How validation contexts are written for one stream (SPEC-NOTES §9, §10): `trusted_ca` when SDS is configured so
 * globally, when the node's metadata has `disable_spiffe_cert_validation` true (bool, or a string Go's ParseBool
 * reads as true), or when the node reports an Envoy build older than 1.18; otherwise the SPIFFE validator. Decided
 * from the FIRST request's node and kept for the stream's life: later requests usually carry no node, and flipping
 * forms on update-triggered pushes is the bug in spiffe/spire#4608.
 */
export function validationModeFor(node: EnvoyNode | undefined, options: ResolvedSdsOptions): ValidationMode {
  if (options.disableSpiffeCertValidation) return 'trusted_ca';
  if (node === undefined) return 'spiffe';
  if (isTrue(fromStruct(node.metadata)[DISABLE_SPIFFE_VALIDATION_KEY])) return 'trusted_ca';
  if (predatesSpiffeValidator(node)) return 'trusted_ca';
  return 'spiffe';
}

/** What identifies an Envoy in logs: its node id and cluster, never anything secret. */
export function nodeLabel(node: EnvoyNode | undefined): { nodeId?: string; nodeCluster?: string } {
  const label: { nodeId?: string; nodeCluster?: string } = {};
  if (node?.id) label.nodeId = node.id.slice(0, 256);
  if (node?.cluster) label.nodeCluster = node.cluster.slice(0, 256);
  return label;
}
