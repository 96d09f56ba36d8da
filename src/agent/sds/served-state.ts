import type { IdentitySnapshot } from '../cache/workload-cache.js';
import type { DiscoveryResponse } from './messages.js';
import { entitledResourceNames, resolveResourceName, type SdsResource } from './resource-names.js';
import type { ValidationMode } from './node-validation-mode.js';
import { SECRET_TYPE_URL, stateVersion } from './secret-builder.js';
import { sharedResourceVersion, sharedSecret } from './secret-memo.js';
import type { ResolvedSdsOptions } from './sds-options.js';
import { NO_NAMES } from './waiting-names.js';

interface Served {
  readonly resource: SdsResource;
  readonly version: string;
}

/** What a subscription resolves to in one snapshot: the same for every stream with that subscription. */
export interface ServedState {
  readonly options: ResolvedSdsOptions;
  /** name → resource version, in subscription order. */
  readonly versions: ReadonlyMap<string, string>;
  /** The names subscribed by name that resolve to nothing (in subscription order): what the stream waits for. */
  readonly unresolved: readonly string[];
  /** The DiscoveryResponse without its nonce, built on first use. */
  body(): Omit<DiscoveryResponse, 'nonce'>;
}

/**
 * Per snapshot (the cache hands every stream of a workload the same snapshot object until something changes), the
 * resolved state per subscription: a rotation watched by a thousand streams resolves names, looks up versions and
 * digests the state once, not once per stream. Held weakly: it goes with the snapshot.
 *
 * A snapshot can outlive a day when nothing changes, and any subscription a workload sends lands here, so the memo
 * is bounded: a few subscriptions of small keys (Envoy's are one name each), the least recently used dropped first.
 * A workload cycling through fresh names would otherwise grow the agent by the size of every list it ever sent.
 */
const servedStates = new WeakMap<IdentitySnapshot, Map<string, ServedState>>();
const MAX_SERVED_STATES_PER_SNAPSHOT = 32;
const MAX_MEMOIZED_KEY_LENGTH = 1024;

export function servedState(
  snapshot: IdentitySnapshot,
  /** Mode, wildcard and names as one string (the stream keeps it until its subscription changes). */
  key: string,
  names: ReadonlySet<string>,
  wildcard: boolean,
  mode: ValidationMode,
  options: ResolvedSdsOptions,
): ServedState {
  let perSnapshot = servedStates.get(snapshot);
  const hit = perSnapshot?.get(key);
  if (hit !== undefined && hit.options === options) {
    // Least recently used goes first: the subscriptions a rotation's thousand streams share stay.
    perSnapshot!.delete(key);
    perSnapshot!.set(key, hit);
    return hit;
  }
  const wanted = wildcard ? new Set([...names, ...entitledResourceNames(snapshot, options, mode)]) : names;
  const current = new Map<string, Served>();
  let unresolved: string[] | undefined;
  for (const name of wanted) {
    const resource = resolveResourceName(snapshot, name, options, mode);
    if (resource !== undefined) current.set(name, { resource, version: sharedResourceVersion(name, resource, mode) });
    else if (names.has(name)) (unresolved ??= []).push(name);
  }
  const versions = new Map([...current].map(([name, { version }]) => [name, version]));
  let body: Omit<DiscoveryResponse, 'nonce'> | undefined;
  const state: ServedState = {
    options,
    versions,
    unresolved: unresolved ?? NO_NAMES,
    body: () =>
      (body ??= {
        version_info: stateVersion(versions),
        resources: [...current].map(([name, { resource }]) => sharedSecret(name, resource, mode)),
        type_url: SECRET_TYPE_URL,
      }),
  };
  if (key.length > MAX_MEMOIZED_KEY_LENGTH) return state;
  if (perSnapshot === undefined) servedStates.set(snapshot, (perSnapshot = new Map()));
  if (!perSnapshot.delete(key) && perSnapshot.size >= MAX_SERVED_STATES_PER_SNAPSHOT) perSnapshot.delete(perSnapshot.keys().next().value!);
  perSnapshot.set(key, state);
  return state;
}
