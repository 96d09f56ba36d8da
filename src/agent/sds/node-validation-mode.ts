import { fromStruct } from '../../common/grpc/proto.js';
import type { EnvoyNode } from './messages.js';
import type { ValidationMode } from './secret-builder.js';
import type { ResolvedSdsOptions } from './sds-options.js';

/** The node metadata key SPIRE reads to switch an Envoy to `trusted_ca` (SPEC-NOTES §9, §14.5). */
export const DISABLE_SPIFFE_VALIDATION_KEY = 'disable_spiffe_cert_validation';

/** Go's strconv.ParseBool spellings, so metadata written for SPIRE means the same here. */
const TRUE_STRINGS = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE_STRINGS = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** A bool, or a string Go's ParseBool reads; anything else is undefined (SPIRE then ignores the key). */
function parseGoBool(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'string') return undefined;
  return TRUE_STRINGS.has(value) ? true : FALSE_STRINGS.has(value) ? false : undefined;
}

/** Envoy added the SPIFFE certificate validator in 1.18; older builds NACK a secret that names it. */
function hasSpiffeValidator(node: EnvoyNode): boolean {
  const version = node.user_agent_build_version?.version;
  if (version === undefined) return false;
  const major = version.major_number ?? 0;
  const minor = version.minor_number ?? 0;
  return major > 1 || (major === 1 && minor >= 18);
}

/**
 * How validation contexts are written for one stream, decided as SPIRE's agent decides (SPEC-NOTES §9, §10), so
 * bootstraps and node metadata written for SPIRE mean the same here: the SPIFFE validator only for a node that
 * reports an Envoy build of 1.18 or later and has validation not disabled; `trusted_ca` otherwise. Disabled is the
 * global option unless the node's metadata has `disable_spiffe_cert_validation` as a bool or a string Go's ParseBool
 * reads, which overrides it either way. A client that does not report an Envoy version gets `trusted_ca`, the form
 * every TLS stack understands. Decided from the FIRST request's node and kept for the stream's life: later requests
 * usually carry no node, and flipping forms on update-triggered pushes is the bug in spiffe/spire#4608.
 */
export function validationModeFor(node: EnvoyNode | undefined, options: ResolvedSdsOptions): ValidationMode {
  if (node === undefined) return 'trusted_ca';
  const disabled = parseGoBool(fromStruct(node.metadata)[DISABLE_SPIFFE_VALIDATION_KEY]) ?? options.disableSpiffeCertValidation;
  return !disabled && hasSpiffeValidator(node) ? 'spiffe' : 'trusted_ca';
}

/** What identifies an Envoy in logs: its node id and cluster, never anything secret. */
export function nodeLabel(node: EnvoyNode | undefined): { nodeId?: string; nodeCluster?: string } {
  const label: { nodeId?: string; nodeCluster?: string } = {};
  if (node?.id) label.nodeId = node.id.slice(0, 256);
  if (node?.cluster) label.nodeCluster = node.cluster.slice(0, 256);
  return label;
}
