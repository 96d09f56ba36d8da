import { notFound, unavailable } from '../../common/errors.js';
import type { IdentitySnapshot } from '../cache/workload-cache.js';
import type { DiscoveryRequest, DiscoveryResponse } from './messages.js';
import { checkAllBundlesName, validationChoiceFor, type ValidationMode } from './node-validation-mode.js';
import { checkResourceNames, entitledResourceNames, isWildcardName, resolveResourceName, type SdsResource } from './resource-names.js';
import { checkTypeUrl, SECRET_TYPE_URL, stateVersion } from './secret-builder.js';
import type { ResolvedSdsOptions } from './sds-options.js';
import { sharedResourceVersion, sharedSecret } from './secret-memo.js';
import { awaitsSigning } from './signing-wait.js';

/** How many unresolved names an error message lists; the rest are counted. */
const MAX_NAMES_IN_ERROR = 5;

/** A FetchSecrets request, checked: the names it asks for and how validation contexts are to be shaped. */
export interface FetchQuery {
  /** The names asked for by name (`*` left out). */
  readonly names: ReadonlySet<string>;
  /** An empty list or `*`: every name that resolves for the caller too. */
  readonly wildcard: boolean;
  readonly mode: ValidationMode;
}

/**
 * Checks a FetchSecrets request before anything is looked up or waited for: the type URL, the names, and `ALL`
 * without the SPIFFE validator (FAILED_PRECONDITION, checkAllBundlesName). The node of this request chooses the
 * validation-context form. Throws MeshidError.
 */
export function fetchQuery(request: DiscoveryRequest, options: ResolvedSdsOptions): FetchQuery {
  checkTypeUrl(request.type_url);
  const requested = request.resource_names ?? [];
  checkResourceNames(requested);
  const validation = validationChoiceFor(request.node, options);
  checkAllBundlesName(requested, validation, options);
  return {
    names: new Set(requested.filter((n) => !isWildcardName(n))),
    wildcard: requested.length === 0 || requested.some(isWildcardName),
    mode: validation.mode,
  };
}

/**
 * Whether a FetchSecrets waits for the caller's SVIDs being signed before it answers (awaitsSigning): only while that
 * wait can make it succeed. The answer is all or nothing, so a named secret missing for any other reason (unknown,
 * another workload's: NOT_FOUND; a failed signing being retried: UNAVAILABLE) fails it however long it waits: that
 * answer goes at once.
 */
export function fetchAwaitsSigning(query: FetchQuery, snapshot: IdentitySnapshot, options: ResolvedSdsOptions): boolean {
  if (!awaitsSigning(snapshot, query.names, query.wildcard, options)) return false;
  for (const name of query.names) {
    if (resolveResourceName(snapshot, name, options, query.mode) === undefined && !awaitsSigning(snapshot, [name], false, options)) return false;
  }
  return true;
}

/**
 * The unary FetchSecrets answer (SPEC-NOTES §12): the current secrets for the requested names, with the same naming,
 * authorization and content rules as the streams. An empty list (or `*`) means every name that resolves for the
 * caller. If any requested name does not resolve — unknown, or an identity the caller is not entitled to — the call
 * fails with NOT_FOUND and serves nothing; both cases get the same answer, so it reveals nothing about other
 * workloads. `nonce` is empty (non-stream xDS). The handler asks only once no name waits for an SVID being signed
 * (signing-wait.ts), or that wait is over: if every name missing then is an SVID of the caller's own entries that the
 * agent holds no valid SVID for (still being signed, or its signing failed and is retried), the call fails
 * UNAVAILABLE (retry) instead, as the Workload API does for a caller whose SVID is not there yet: the name is right.
 */
/** Whether `name` stands for an SVID of the caller's own entries that the agent holds no valid SVID for. */
function ownNameWithoutSvid(snapshot: IdentitySnapshot, name: string, options: ResolvedSdsOptions): boolean {
  if (name === options.defaultSvidName) return snapshot.entitled && snapshot.defaultSvid === undefined;
  return snapshot.withoutSvid.has(name);
}

export function fetchResponse(query: FetchQuery, snapshot: IdentitySnapshot, options: ResolvedSdsOptions): DiscoveryResponse {
  const { mode } = query;
  const names = new Set(query.names);
  if (query.wildcard) for (const name of entitledResourceNames(snapshot, options, mode)) names.add(name);

  const found = new Map<string, SdsResource>();
  const missing: string[] = [];
  for (const name of names) {
    const resource = resolveResourceName(snapshot, name, options, mode);
    if (resource === undefined) missing.push(name);
    else found.set(name, resource);
  }
  if (missing.length > 0) {
    const listed = missing.slice(0, MAX_NAMES_IN_ERROR).map((n) => JSON.stringify(n.slice(0, 256))).join(', ');
    const more = missing.length > MAX_NAMES_IN_ERROR ? ` and ${missing.length - MAX_NAMES_IN_ERROR} more` : '';
    // Names of the caller's own entries whose SVIDs are still being signed once the wait is over (a slow server): the
    // secret is moments away, and NOT_FOUND would tell the caller its name is wrong, which clients do not retry. With
    // any other name among the missing the answer is NOT_FOUND however long it waits, so that is what it gets.
    const svids = missing.length === 1 ? 'SVID' : 'SVIDs';
    if (missing.every((name) => awaitsSigning(snapshot, [name], false, options))) {
      throw unavailable(`the ${svids} for ${listed}${more} ${missing.length === 1 ? 'is' : 'are'} still being signed; retry`);
    }
    // A signing that failed (meshid-server unreachable, or refusing) is retried by the agent: NOT_FOUND would tell the
    // caller to stop asking for a name it will get.
    if (missing.every((name) => ownNameWithoutSvid(snapshot, name, options))) {
      throw unavailable(`the agent holds no valid ${svids} for ${listed}${more} yet (its signing failed and is retried; the agent's log says why); retry`);
    }
    throw notFound(`no secret for ${listed}${more} is available to this caller`);
  }
  const versions = new Map([...found].map(([name, resource]) => [name, sharedResourceVersion(name, resource, mode)]));
  return {
    version_info: stateVersion(versions),
    resources: [...found].map(([name, resource]) => sharedSecret(name, resource, mode)),
    type_url: SECRET_TYPE_URL,
    nonce: '',
  };
}
