import type { Clock, TimerHandle } from '../../common/clock.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { IdentitySnapshot, WorkloadCache } from '../cache/workload-cache.js';
import type { ResolvedSdsOptions } from './sds-options.js';

/**
 * An SDS first answer waits for the caller's SVIDs still being signed, as the Workload API's first X.509 message does
 * (and SPIRE's agent for both APIs): otherwise it goes out without a secret that is a moment away, which costs Envoy a
 * second push and a longer warming, and a FetchSecrets a NOT_FOUND. Only for an SVID of the caller's own entries
 * that the agent is signing now (IdentitySnapshot.signing): a name that does not resolve for any other reason
 * (unknown, another workload's, a federated bundle not there, a signing that failed and is retried) may never come,
 * and gets what it got before at once. Bundles never wait: the own one is there before anything is served.
 */

/**
 * How long an SDS first answer waits by default. Shorter than the Workload API's first-message window (30 s): Envoy
 * gives up on a first answer after its initial_fetch_timeout (15 s by default) and warms without any of the secrets,
 * and a stream naming several, or all, would hold those it has for the one being signed. A signing normally takes
 * milliseconds; one the server is slow to answer costs an Envoy 5 s, then it gets what there is and the rest is
 * pushed when it comes.
 */
export const SDS_SIGNING_WAIT_MS = 5_000;

/**
 * Whether an answer for these names (or, with `wildcard`, every name the caller is entitled to) lacks a secret only
 * because its SVID is being signed.
 */
export function awaitsSigning(snapshot: IdentitySnapshot, names: Iterable<string>, wildcard: boolean, options: ResolvedSdsOptions): boolean {
  if (snapshot.signing.size === 0) return false;
  const missing = (spiffeId: string): boolean => snapshot.signing.has(spiffeId) && !snapshot.svids.some((s) => s.spiffeId === spiffeId);
  if (wildcard && (snapshot.defaultSigning || [...snapshot.signing].some(missing))) return true;
  for (const name of names) {
    if (name === options.defaultSvidName ? snapshot.defaultSigning : missing(name)) return true;
  }
  return false;
}

/**
 * When a wait that starts now ends: after `waitMs` (the Workload API's first-message window), or earlier with time to
 * answer before the call's `deadline` (on `clock`): a caller told what there is beats one told DEADLINE_EXCEEDED.
 */
export function signingWaitEnd(clock: Clock, waitMs: number, deadline: number): number {
  const now = clock.now();
  return now + Math.max(0, Math.min(waitMs, (deadline - now) * 0.9));
}

/**
 * Calls `done` once, when `stillWaiting` turns false for the caller's state (checked on every cache notification),
 * or at `endAt` on `clock`, whichever comes first. Returns a function that stops the wait without calling `done`:
 * for a call that is cancelled meanwhile.
 */
export function waitForSigning(
  cache: Pick<WorkloadCache, 'snapshot' | 'subscribe'>,
  selectors: readonly Selector[],
  stillWaiting: (snapshot: IdentitySnapshot) => boolean,
  clock: Clock,
  endAt: number,
  done: () => void,
): () => void {
  let timer: TimerHandle | undefined;
  let unsubscribe: (() => void) | undefined;
  const stop = (): void => {
    timer?.cancel();
    timer = undefined;
    unsubscribe?.();
    unsubscribe = undefined;
  };
  const finish = (): void => {
    if (timer === undefined) return;
    stop();
    done();
  };
  timer = clock.setTimer(finish, endAt - clock.now());
  unsubscribe = cache.subscribe(selectors, () => {
    if (!stillWaiting(cache.snapshot(selectors))) finish();
  });
  return stop;
}
