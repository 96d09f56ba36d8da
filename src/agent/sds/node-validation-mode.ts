import { failedPrecondition } from '../../common/errors.js';
import { fromStruct } from '../../common/grpc/proto.js';
import type { EnvoyNode } from './messages.js';
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
const SPIFFE_VALIDATOR_SINCE = { major: 1, minor: 18 } as const;
const SINCE = `${SPIFFE_VALIDATOR_SINCE.major}.${SPIFFE_VALIDATOR_SINCE.minor}`;

function hasSpiffeValidator(major: number, minor: number): boolean {
  const since = SPIFFE_VALIDATOR_SINCE;
  return major > since.major || (major === since.major && minor >= since.minor);
}

/**
 * How trust is expressed in a validation context: Envoy's SPIFFE certificate validator (one trust bundle per trust
 * domain, so a federated root authenticates only its own domain), or plain `trusted_ca` for Envoys without it.
 */
export type ValidationMode = 'spiffe' | 'trusted_ca';

/**
 * The validation-context form of one stream (or one FetchSecrets call) and, for `trusted_ca`, why: the reasons are
 * clauses naming what the node or the agent said, the remedies what a person changes to get the SPIFFE validator.
 * Both end up in the FAILED_PRECONDITION that refuses `ALL` under `trusted_ca` (checkAllBundlesName).
 */
export interface ValidationChoice {
  readonly mode: ValidationMode;
  readonly reasons: readonly string[];
  readonly remedies: readonly string[];
}

/**
 * How validation contexts are written for one stream, decided as SPIRE's agent decides (SPEC-NOTES §9, §10;
 * pkg/agent/endpoints/sdsv3/handler.go, supportsSPIFFEAuthExtension and isSPIFFECertValidationDisabled), so
 * bootstraps and node metadata written for SPIRE mean the same here: `trusted_ca` for a node that reports an Envoy
 * build older than 1.18 or has validation disabled; the SPIFFE validator otherwise, including a request without a
 * node or a node that reports no build version (a non-Envoy client, or an Envoy that does not say): SPIRE supports
 * the validator "as default" and only an Envoy version it knows to lack it opts out. Disabled is the global option
 * unless the node's metadata has `disable_spiffe_cert_validation` as a bool or a string Go's ParseBool reads, which
 * overrides it either way. Decided from the FIRST request's node and kept for the stream's life: later requests
 * usually carry no node, and flipping forms on update-triggered pushes is the bug in spiffe/spire#4608.
 */
export function validationChoiceFor(node: EnvoyNode | undefined, options: ResolvedSdsOptions): ValidationChoice {
  const reasons: string[] = [];
  const remedies: string[] = [];
  const metadata = fromStruct(node?.metadata)[DISABLE_SPIFFE_VALIDATION_KEY];
  const override = parseGoBool(metadata);
  if (override === true) {
    reasons.push(`the node metadata sets ${DISABLE_SPIFFE_VALIDATION_KEY} to ${JSON.stringify(metadata)}`);
    remedies.push(`remove ${DISABLE_SPIFFE_VALIDATION_KEY} from the node metadata or set it to false`);
  } else if (override === undefined && options.disableSpiffeCertValidation) {
    reasons.push('the agent option sds.disable_spiffe_cert_validation is set');
    remedies.push(`unset that option, or set ${DISABLE_SPIFFE_VALIDATION_KEY}: false in this Envoy's node metadata`);
  }
  // A build version without its `version` says no more than none (SPIRE's handler would dereference nil there).
  const version = node?.user_agent_build_version?.version;
  if (version !== undefined) {
    const major = version.major_number ?? 0;
    const minor = version.minor_number ?? 0;
    if (!hasSpiffeValidator(major, minor)) {
      reasons.push(`the node reports Envoy ${major}.${minor}, which has no SPIFFE certificate validator`);
      remedies.push(`upgrade Envoy to ${SINCE} or later`);
    }
  }
  return reasons.length === 0 ? SPIFFE_VALIDATOR : trustedCa(reasons, remedies);
}

const SPIFFE_VALIDATOR: ValidationChoice = Object.freeze({ mode: 'spiffe', reasons: [], remedies: [] });

function trustedCa(reasons: string[], remedies: string[]): ValidationChoice {
  return { mode: 'trusted_ca', reasons, remedies };
}

/** The choice a stream holds before its first request is handled (nothing is sent before that). */
export const INITIAL_VALIDATION_CHOICE = SPIFFE_VALIDATOR;

/**
 * Refuses the all-bundles name (`ALL`) for a stream or call that gets `trusted_ca`, as SPIRE's agent does
 * (pkg/agent/endpoints/sdsv3/handler.go: its `trusted_ca` builder fails `buildAll`, which fails the request or ends
 * the stream). One `trusted_ca` holding the own and every federated trust domain's roots would let a federated root
 * vouch for any SPIFFE ID, in any trust domain, that this Envoy checks; the SPIFFE validator instead gives each
 * trust domain its own roots. Refused whether or not the caller federates today, so a federation added later never
 * changes what a running stream may hold. FAILED_PRECONDITION (SPIRE answers INTERNAL, which says "agent bug"): the
 * request is well formed, and serving it needs a change to the Envoy or the agent config, which the message names.
 */
export function checkAllBundlesName(
  names: Iterable<string>,
  choice: ValidationChoice,
  options: ResolvedSdsOptions,
): void {
  if (choice.mode === 'spiffe') return;
  for (const name of names) {
    if (name !== options.defaultAllBundlesName) continue;
    const quoted = JSON.stringify(name);
    throw failedPrecondition(
      `${quoted} (every trust domain's roots in one validation context) is served only with Envoy's ` +
        `SPIFFE certificate validator, which keeps each trust domain's roots to its own SPIFFE IDs; this Envoy ` +
        `gets plain trusted_ca because ${choice.reasons.join(' and ')}, and in one trusted_ca a federated root ` +
        `could vouch for any SPIFFE ID. To use ${quoted}: ${choice.remedies.join('; ')}. To trust only your own ` +
        `trust domain, ask for ${JSON.stringify(options.defaultBundleName)} instead`,
    );
  }
}

/** What identifies an Envoy in logs: its node id and cluster, never anything secret. */
export function nodeLabel(node: EnvoyNode | undefined): { nodeId?: string; nodeCluster?: string } {
  const label: { nodeId?: string; nodeCluster?: string } = {};
  if (node?.id) label.nodeId = detachedPrefix(node.id, 256);
  if (node?.cluster) label.nodeCluster = detachedPrefix(node.cluster, 256);
  return label;
}

/**
 * The first `chars` characters of `text` in a string of their own. V8 makes a slice of a long string a view that
 * keeps the whole of it alive: the label of a stream whose Envoy sent a node id of 3 MB held those 3 MB for the
 * stream's life, and one uid's streams (up to max_calls_per_uid) could hold gigabytes. Rebuilding the prefix from
 * bytes lets the request's string go (a surrogate pair cut at the end becomes U+FFFD, harmless in a log label).
 */
function detachedPrefix(text: string, chars: number): string {
  return text.length <= chars ? text : Buffer.from(text.slice(0, chars), 'utf8').toString('utf8');
}
