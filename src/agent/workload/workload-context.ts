import type { Metadata } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { callerRecheck } from '../endpoints/caller-recheck.js';
import { noIdentityFor, notSyncedFor, RefusalLog, type CallerOf } from '../endpoints/refusal-log.js';
import { isMeshidError, unavailable } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { IdentitySnapshot, WorkloadCache } from '../cache/workload-cache.js';
import type { IdentityStream } from './identity-stream.js';

/** What attestation may read from a call: the connection (`getPeer()`, see UdsServer) and the request metadata. */
export interface WorkloadCallInfo {
  getPeer(): string;
  readonly metadata: Metadata;
}

/**
 * Workload attestation for one call: the caller's selectors. Throws MeshidError — unavailable when the caller cannot
 * be identified with confidence (SPEC-NOTES §7). In the agent this is `peerAttestation(...)` from
 * src/agent/endpoints/interceptors.ts.
 */
export type WorkloadAttest = (call: WorkloadCallInfo) => readonly Selector[] | Promise<readonly Selector[]>;

export interface WorkloadApiOptions {
  /**
   * How long a stream waits, while its caller is entitled, for something valid to send (the first message waits
   * until every matching entry has an SVID) before it ends UNAVAILABLE. Default 30 s.
   */
  pendingTimeoutMs?: number;
  /**
   * Claims besides `sub`, `aud` and `exp` that ValidateJWTSVID returns of a foreign trust domain's token (SPIRE's
   * `allowed_foreign_jwt_claims`). Default none.
   */
  allowedForeignJwtClaims?: readonly string[];
  /**
   * FetchX509Bundles and FetchJWTBundles answer callers no entry matches with the own trust domain's bundle instead
   * of PERMISSION_DENIED (SPIRE's `allow_unauthenticated_verifiers`): for relying parties that only verify. Default
   * false (default deny).
   */
  allowUnauthenticatedVerifiers?: boolean;
}

export interface WorkloadApiDeps {
  cache: WorkloadCache;
  attest: WorkloadAttest;
  log: Logger;
  clock: Clock;
  options?: WorkloadApiOptions;
  /** Who made a call, for the log line of its refusal (the socket's peer table in the agent). */
  callerOf?: CallerOf;
}

export const DEFAULT_PENDING_TIMEOUT_MS = 30_000;

/** An attested caller (holding at least one entry unless the RPC serves verifiers): its selectors and identity state. */
export interface Admission {
  readonly selectors: readonly Selector[];
  readonly snapshot: IdentitySnapshot;
}

/** Any attestation failure as the status the caller gets: the attestor's own MeshidError, else UNAVAILABLE. */
function attestationFailure(error: unknown): unknown {
  return isMeshidError(error) ? error : unavailable('workload attestation failed', error);
}

/**
 * What the Workload API's calls share, one per service (handler.ts builds it): admission (agent state, attestation,
 * entitlement) and the refusal log, which every call goes through in the same way; the stream settings and the open
 * streams, which the three streaming calls share and the service's close() ends; the duplicate-hint log, one throttle
 * for FetchX509SVID and FetchJWTSVID. State one call alone uses (ValidateJWTSVID's allowed foreign claims, each
 * stream's view) stays in that call's file.
 */
export interface WorkloadContext {
  readonly deps: WorkloadApiDeps;
  readonly refusals: RefusalLog;
  readonly recheck: (call: WorkloadCallInfo, selectors: readonly Selector[]) => void;
  readonly pendingTimeoutMs: number;
  readonly verifiersAllowed: boolean;
  readonly duplicateHint: (rpc: string) => (dropped: { spiffeId: string; hint: string }, kept: { spiffeId: string }) => void;
  readonly open: Set<IdentityStream<unknown>>;
  readonly attest: (call: WorkloadCallInfo) => readonly Selector[] | Promise<readonly Selector[]>;
  readonly admitEntitled: (call: WorkloadCallInfo) => Admission | Promise<Admission>;
  readonly admitVerifier: (call: WorkloadCallInfo) => Admission | Promise<Admission>;
  readonly refuse: (error: unknown, rpc: string, call: WorkloadCallInfo) => ReturnType<typeof toServiceError>;
}

export function workloadContext(deps: WorkloadApiDeps): WorkloadContext {
  const log = deps.log.child({ subsystem: 'workload-api' });
  const refusals = new RefusalLog(log, deps.clock, 'Workload API', deps.callerOf);
  const recheck = callerRecheck(deps.attest);
  const pendingTimeoutMs = deps.options?.pendingTimeoutMs ?? DEFAULT_PENDING_TIMEOUT_MS;
  if (!Number.isFinite(pendingTimeoutMs) || pendingTimeoutMs <= 0) throw new Error(`pendingTimeoutMs must be positive, got ${pendingTimeoutMs}`);
  const verifiersAllowed = deps.options?.allowUnauthenticatedVerifiers === true;
  // SPIRE logs each identity a duplicate hint leaves out; here once a minute per RPC, identity and hint.
  const duplicateHints = new LogThrottle(deps.clock);
  const duplicateHint =
    (rpc: string) =>
    (dropped: { spiffeId: string; hint: string }, kept: { spiffeId: string }): void => {
      const admitted = duplicateHints.admit(`${rpc}\n${dropped.spiffeId}\n${dropped.hint}`);
      if (admitted === undefined) return;
      log.warn(
        { rpc, spiffeId: dropped.spiffeId, hint: dropped.hint, ...admitted },
        `identity ${dropped.spiffeId} left out: its hint is already that of ${kept.spiffeId}, an older entry matching the same workload; ` +
          'a hint must be unique among a workload\'s entries (give one of them another hint)',
      );
    };
  const open = new Set<IdentityStream<unknown>>();

  /**
   * The caller's selectors, or a failure as MeshidError (UNAVAILABLE unless the attestor said otherwise). Synchronous
   * when `deps.attest` is, as the agent's is: a stream then opens within grpc-js's handler call, without the two
   * promises and microtask hops per call that async functions cost here (measured: ~0.8 KB and ~5 µs of ~160 per call).
   */
  function attest(call: WorkloadCallInfo): readonly Selector[] | Promise<readonly Selector[]> {
    if (!deps.cache.ready()) throw unavailable('the agent has no identity state to serve yet');
    let selectors: readonly Selector[] | Promise<readonly Selector[]>;
    try {
      selectors = deps.attest(call);
    } catch (error) {
      throw attestationFailure(error);
    }
    return selectors instanceof Promise
      ? selectors.catch((error: unknown) => {
          throw attestationFailure(error);
        })
      : selectors;
  }

  function entitle(selectors: readonly Selector[]): Admission {
    const snapshot = deps.cache.snapshot(selectors);
    if (!snapshot.entitled) {
      // Served from the data dir before the first sync (the server unreachable, say), the agent cannot tell a caller
      // without an entry from one whose entry was made while it was down. PERMISSION_DENIED would say the former, and
      // java-spiffe's watchers take it as final (SPIRE's agent serves nothing before its first sync, so its clients
      // retry): "not yet synced" is UNAVAILABLE (SPEC-NOTES §7).
      if (!deps.cache.synced()) {
        throw notSyncedFor(selectors);
      }
      throw noIdentityFor(selectors, 'no identity issued: no registration entry matches the caller');
    }
    return { selectors, snapshot };
  }

  /** attest, then entitlement (default deny); synchronous when attest is. */
  function admitEntitled(call: WorkloadCallInfo): Admission | Promise<Admission> {
    const selectors = attest(call);
    return selectors instanceof Promise ? selectors.then(entitle) : entitle(selectors);
  }

  /** attest only: a verifier without an entry gets the own trust domain's bundle (the snapshot has no other). */
  function admitVerifier(call: WorkloadCallInfo): Admission | Promise<Admission> {
    const selectors = attest(call);
    const admit = (s: readonly Selector[]): Admission => ({ selectors: s, snapshot: deps.cache.snapshot(s) });
    return selectors instanceof Promise ? selectors.then(admit) : admit(selectors);
  }

  function refuse(error: unknown, rpc: string, call: WorkloadCallInfo): ReturnType<typeof toServiceError> {
    refusals.refused(rpc, error, call);
    return toServiceError(error);
  }

  return { deps, refusals, recheck, pendingTimeoutMs, verifiersAllowed, duplicateHint, open, attest, admitEntitled, admitVerifier, refuse };
}
