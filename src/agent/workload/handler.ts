import { setMaxListeners } from 'node:events';
import type {
  Metadata,
  sendUnaryData,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { callerRecheck } from '../endpoints/caller-recheck.js';
import { noIdentityFor, RefusalLog, type CallerOf } from '../endpoints/refusal-log.js';
import { isMeshidError, unavailable } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { callDeadlineOnClock } from '../../common/grpc/call-deadline.js';
import { loadProto } from '../../common/grpc/proto.js';
import { serviceOf } from '../../common/grpc/service.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { IdentitySnapshot, JwtSvidResult, WorkloadCache } from '../cache/workload-cache.js';
import { jwtBundlesResponse, sameBundlesResponse, x509BundlesResponse } from './bundles-response.js';
import { encodeOnce } from './encode-once.js';
import { uniqueHints } from './hints.js';
import { warnOversizedResponses } from './oversized-response.js';
import { IdentityStream, type StreamCall, type StreamView } from './identity-stream.js';
import { parseJwtSvidRequest } from './jwt-request.js';
import type {
  EmptyRequest,
  JwtBundlesResponse,
  JwtSvid,
  JwtSvidRequest,
  JwtSvidResponse,
  ValidateJwtSvidRequest,
  ValidateJwtSvidResponse,
  X509BundlesResponse,
  X509SvidResponse,
} from './messages.js';
import { checkSecurityHeader } from './security-header.js';
import { requireValidateFields, validateJwtSvidRequest } from './validate-jwt.js';
import { sameX509SvidResponse, x509SvidResponse, type DuplicateHint } from './x509-response.js';

/** The .proto file and service name of the SPIFFE Workload API: no package (SPEC-NOTES §1, §13, §14.1). */
export const WORKLOAD_PROTO = 'workload/workload.proto';
export const WORKLOAD_SERVICE_NAME = 'SpiffeWorkloadAPI';

/**
 * The service definition to pass to grpc-js Server.addService with `workloadApiHandlers(...).implementation`. The
 * streams' responses are encoded once per response object (encodeOnce): streams with the same content share one.
 * With `oversized`, a response larger than gRPC clients take by default is logged there (warnOversizedResponses).
 */
export function workloadApiServiceDefinition(oversized?: { log: Logger; clock: Clock }): ServiceDefinition {
  const definition = encodeOnce(serviceOf(loadProto(WORKLOAD_PROTO), WORKLOAD_SERVICE_NAME), ['FetchX509SVID']);
  if (oversized === undefined) return definition;
  const log = oversized.log.child({ subsystem: 'workload-api' });
  return warnOversizedResponses(definition, ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTSVID', 'FetchJWTBundles'], log, oversized.clock);
}

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

export interface WorkloadApiService {
  /** FetchX509SVID, FetchX509Bundles, FetchJWTSVID, FetchJWTBundles, ValidateJWTSVID for Server.addService. */
  readonly implementation: UntypedServiceImplementation;
  /** Streams open right now (each holds one cache subscription). */
  openStreams(): number;
  /** Ends every open stream with UNAVAILABLE (clients reconnect with backoff) and unsubscribes it: agent shutdown. */
  close(): void;
}

export const DEFAULT_PENDING_TIMEOUT_MS = 30_000;

/** An attested caller (holding at least one entry unless the RPC serves verifiers): its selectors and identity state. */
interface Admission {
  readonly selectors: readonly Selector[];
  readonly snapshot: IdentitySnapshot;
}

/** Any attestation failure as the status the caller gets: the attestor's own MeshidError, else UNAVAILABLE. */
function attestationFailure(error: unknown): unknown {
  return isMeshidError(error) ? error : unavailable('workload attestation failed', error);
}

/**
 * svids[0] must be the real default identity. The first message waits until every matching entry has its SVID (as
 * SPIRE's agent does, so a one-shot fetch sees them all), or failed to get one and is being retried (the server
 * unreachable, or a refusal that came back on the retry: the other SVIDs are served meanwhile); every message waits
 * while the default's SVID is missing (say, not yet signed, or expired while the server is unreachable), which would
 * otherwise make a sibling the default.
 */
function x509SvidView(onDuplicateHint: DuplicateHint): StreamView<X509SvidResponse> {
  return {
    render: (snapshot, first) =>
      (!first || snapshot.complete) && snapshot.defaultSvid !== undefined ? x509SvidResponse(snapshot, onDuplicateHint) : undefined,
    same: sameX509SvidResponse,
  };
}
const x509BundlesView: StreamView<X509BundlesResponse> = { render: x509BundlesResponse, same: sameBundlesResponse };
const jwtBundlesView: StreamView<JwtBundlesResponse> = { render: jwtBundlesResponse, same: sameBundlesResponse };

/**
 * Builds the SPIFFE Workload API (WL-API §4–§8; SPEC-NOTES §7, §8) over the agent's identity cache.
 *
 * Every call, in this order: the `workload.spiffe.io: true` header (INVALID_ARGUMENT; normally already refused by
 * workloadSecurityHeaderInterceptor before the handler runs — checked again here so a server assembled without the
 * interceptor still fails closed); request fields (INVALID_ARGUMENT); agent state present (UNAVAILABLE); `attest`
 * (UNAVAILABLE when it fails); then entitlement — a caller no entry matches gets PERMISSION_DENIED on FetchX509SVID,
 * FetchX509Bundles, FetchJWTSVID and FetchJWTBundles (default deny, SPEC-NOTES §8, §13) — on the two bundle RPCs
 * unless `allowUnauthenticatedVerifiers`, when such a caller gets the own trust domain's bundle.
 *
 * ValidateJWTSVID is the exception: it requires the header, agent state and a successful attestation (so only an
 * identifiable local process asks, and logs say which), but no entitlement. Validating hands out nothing secret,
 * relying parties that only verify tokens need not hold an identity (SPIRE serves them the same way), and the spec's
 * default-deny SHOULD covers the bundle RPCs only. It checks against the caller's bundles, as SPIRE does: the own
 * trust domain's and those the caller's entries federate with (none for a caller without entries), the key taken
 * only from the token subject's trust domain; a foreign token's claims are limited to sub, aud, exp and
 * `allowedForeignJwtClaims`.
 *
 * Streams attest once, when they open, and keep those selectors for their life (as SPIRE does); the cache tells them
 * about changes (IdentityStream).
 */
export function workloadApiHandlers(deps: WorkloadApiDeps): WorkloadApiService {
  const log = deps.log.child({ subsystem: 'workload-api' });
  const refusals = new RefusalLog(log, deps.clock, 'Workload API', deps.callerOf);
  const recheck = callerRecheck(deps.attest);
  const pendingTimeoutMs = deps.options?.pendingTimeoutMs ?? DEFAULT_PENDING_TIMEOUT_MS;
  if (!Number.isFinite(pendingTimeoutMs) || pendingTimeoutMs <= 0) throw new Error(`pendingTimeoutMs must be positive, got ${pendingTimeoutMs}`);
  const allowedForeignClaims: ReadonlySet<string> = new Set(deps.options?.allowedForeignJwtClaims ?? []);
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
  const x509View = x509SvidView(duplicateHint('FetchX509SVID'));
  const jwtDuplicateHint = duplicateHint('FetchJWTSVID');
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
      if (!deps.cache.synced()) throw unavailable('the agent has not synced with meshid-server since it started, and no entry it holds matches the caller; retry');
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

  function openStream<Res>(rpc: string, call: ServerWritableStream<EmptyRequest, Res>, view: StreamView<Res>, servesVerifiers = false): void {
    const requireEntitlement = !(servesVerifiers && verifiersAllowed);
    const fail = (error: unknown): void => {
      if (!call.cancelled) call.emit('error', refuse(error, rpc, call));
    };
    try {
      checkSecurityHeader(call.metadata);
    } catch (error) {
      fail(error);
      return;
    }
    const start = ({ selectors }: Admission): void => {
      if (call.cancelled) return;
      const stream: IdentityStream<Res> = new IdentityStream<Res>({
        call: call as unknown as StreamCall<Res>,
        view,
        cache: deps.cache,
        selectors,
        recheck: () => recheck(call, selectors),
        requireEntitlement,
        clock: deps.clock,
        pendingTimeoutMs,
        refused: (error) => refusals.refused(rpc, error, call),
        onClose: () => open.delete(stream as IdentityStream<unknown>),
      });
      open.add(stream as IdentityStream<unknown>);
      stream.start();
    };
    let admission: Admission | Promise<Admission>;
    try {
      admission = requireEntitlement ? admitEntitled(call) : admitVerifier(call);
    } catch (error) {
      fail(error);
      return;
    }
    if (admission instanceof Promise) admission.then(start, fail);
    else start(admission);
  }

  function unary<Req, Res>(rpc: string, call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>, serve: () => Promise<Res>): void {
    const run = async (): Promise<Res> => {
      checkSecurityHeader(call.metadata);
      return serve();
    };
    run().then(
      (response) => callback(null, response),
      (error: unknown) => {
        // A caller that cancelled reads no answer: its call's end is not a refusal to log.
        if (!call.cancelled) callback(refuse(error, rpc, call));
      },
    );
  }

  async function fetchJwtSvid(call: ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>): Promise<JwtSvidResponse> {
    const query = parseJwtSvidRequest(call.request);
    const { selectors } = await admitEntitled(call);
    // A wait for the server's signing budget ends with the call: a client that gave up without a deadline would
    // otherwise hold it for up to 20 s, and have a token signed for nobody at its end.
    const cancelled = new AbortController();
    // The cache listens on it once per identity it signs for, so a caller of more than ten identities passed Node's
    // default of ten listeners: every such call printed a "possible memory leak" warning, a raw line among the JSON
    // logs. The listeners are as many as the caller's entries and go when their signings end.
    setMaxListeners(0, cancelled.signal);
    const abort = (): void => cancelled.abort();
    call.on('cancelled', abort);
    if (call.cancelled) abort();
    let results: JwtSvidResult[];
    try {
      results = await deps.cache.fetchJwtSvids(selectors, query.audience, query.spiffeId, callDeadlineOnClock(call, deps.clock), cancelled.signal);
    } finally {
      call.removeListener('cancelled', abort);
    }
    // Attested before the signing, which can take up to the call's deadline: the token goes to the process that holds
    // the connection now, which must still be the one attested (callerRecheck), as a FetchSecrets that waited does.
    recheck(call, selectors);
    // Never hand out an identity that was not asked for, even if a cache implementation got the filter wrong.
    const wanted = query.spiffeId === undefined ? results : results.filter((r) => r.spiffeId === query.spiffeId);
    if (wanted.length === 0) {
      throw noIdentityFor(selectors, query.spiffeId === undefined ? 'no identity issued' : `the caller is not entitled to ${query.spiffeId}`);
    }
    const svids = uniqueHints(wanted, jwtDuplicateHint).map(({ item, hint }): JwtSvid => {
      const svid: JwtSvid = { spiffe_id: item.spiffeId, svid: item.token };
      if (hint !== '') svid.hint = hint;
      return svid;
    });
    return { svids };
  }

  async function validate(call: ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>): Promise<ValidateJwtSvidResponse> {
    const request = call.request;
    // Mandatory fields first: a malformed request is the caller's mistake whoever the caller is.
    requireValidateFields(request);
    const snapshot = deps.cache.snapshot(await attest(call));
    return validateJwtSvidRequest(request, [snapshot.bundle, ...snapshot.federatedBundles], deps.clock.now(), {
      ownTrustDomain: snapshot.bundle.trustDomain,
      allowedForeignClaims,
    });
  }

  const implementation: UntypedServiceImplementation = {
    FetchX509SVID(call: ServerWritableStream<EmptyRequest, X509SvidResponse>): void {
      openStream('FetchX509SVID', call, x509View);
    },
    FetchX509Bundles(call: ServerWritableStream<EmptyRequest, X509BundlesResponse>): void {
      openStream('FetchX509Bundles', call, x509BundlesView, true);
    },
    FetchJWTBundles(call: ServerWritableStream<EmptyRequest, JwtBundlesResponse>): void {
      openStream('FetchJWTBundles', call, jwtBundlesView, true);
    },
    FetchJWTSVID(call: ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>, callback: sendUnaryData<JwtSvidResponse>): void {
      unary('FetchJWTSVID', call, callback, () => fetchJwtSvid(call));
    },
    ValidateJWTSVID(call: ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>, callback: sendUnaryData<ValidateJwtSvidResponse>): void {
      unary('ValidateJWTSVID', call, callback, () => validate(call));
    },
  };

  return {
    implementation,
    openStreams: () => open.size,
    close: () => {
      for (const stream of [...open]) stream.fail(unavailable('the agent is shutting down'));
    },
  };
}
