import type {
  Deadline,
  Metadata,
  sendUnaryData,
  ServerDuplexStream,
  ServerUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { isMeshidError, unavailable } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { callDeadlineOnClock } from '../../common/grpc/call-deadline.js';
import { loadProto } from '../../common/grpc/proto.js';
import { serviceOf } from '../../common/grpc/service.js';
import { systemClock, type Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { callerRecheck } from '../endpoints/caller-recheck.js';
import { noIdentityFor, notSynced, notSyncedFor, RefusalLog, type CallerOf } from '../endpoints/refusal-log.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { IdentitySnapshot } from '../cache/workload-cache.js';
import { DeltaStream } from './delta-stream.js';
import { fetchAwaitsSigning, fetchQuery, fetchResponse, type FetchQuery } from './fetch.js';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse } from './messages.js';
import { resolveSdsOptions, type ResolvedSdsOptions, type SdsOptions } from './sds-options.js';
import type { SdsCache, SecretStream, SecretStreamCall, StreamContext } from './secret-stream.js';
import { SotwStream } from './sotw-stream.js';
import { encodeSharedBodies, type NoncedResponse } from './nonced-response.js';
import { warnOversizedSecrets } from './oversized-secrets.js';
import { SDS_SIGNING_WAIT_MS, signingWaitEnd, waitForSigning } from './signing-wait.js';
import { emptyStats, type SdsStats } from './stats.js';
import { SubscriptionBudget } from './subscription-budget.js';
import { WaitingNamesLog } from './waiting-names.js';

/** The .proto file and full service name of Envoy SDS v3 (SPEC-NOTES §1, §14.2). */
export const SDS_PROTO = 'envoy/service/secret/v3/sds.proto';
export const SDS_SERVICE_NAME = 'envoy.service.secret.v3.SecretDiscoveryService';

/**
 * The service definition to pass to grpc-js Server.addService with `sdsHandlers(...).implementation`. With
 * `oversized`, a response larger than gRPC clients take by default is logged there (warnOversizedSecrets).
 */
export function sdsServiceDefinition(oversized?: { log: Logger; clock: Clock }): ServiceDefinition {
  const definition = encodeSharedBodies(serviceOf(loadProto(SDS_PROTO), SDS_SERVICE_NAME), ['StreamSecrets']);
  if (oversized === undefined) return definition;
  return warnOversizedSecrets(definition, ['StreamSecrets', 'DeltaSecrets', 'FetchSecrets'], oversized.log.child({ subsystem: 'sds' }), oversized.clock);
}

/**
 * Workload attestation for one call: the caller's selectors, from the connection's peer credentials. Throws
 * MeshidError (e.g. unavailable when attestation fails). SDS calls need no `workload.spiffe.io` header (SPEC-NOTES
 * §7, §13): Envoy never sends it.
 */
export type AttestCall = (call: SdsCallInfo) => readonly Selector[] | Promise<readonly Selector[]>;

/** What attestation may read from a call: the connection (`getPeer()`, see UdsServer) and the request metadata. */
export interface SdsCallInfo {
  getPeer(): string;
  readonly metadata: Metadata;
}

export interface SdsHandlerDeps {
  cache: SdsCache;
  attest: AttestCall;
  log: Logger;
  options?: SdsOptions;
  /** Paces the refusal log and times the wait for SVIDs being signed; the system clock by default. */
  clock?: Clock;
  /** Who made a call, for the log lines of its refusal and its stream (the socket's peer table in the agent). */
  callerOf?: CallerOf;
  /**
   * How long a first answer (a stream's first response, a FetchSecrets) waits for the caller's SVIDs still being
   * signed (signing-wait.ts); SDS_SIGNING_WAIT_MS by default.
   */
  signingWaitMs?: number;
  /**
   * The uid whose name budget a call's streams spend (the socket's: a subordinate uid's owner's, see SubordinateIds);
   * by default the caller's own uid (callerOf).
   */
  accountOf?: (call: { getPeer(): string }) => number | undefined;
  /** Characters of resource names one uid's open streams may hold in all; DEFAULT_NAME_CHARS_PER_UID by default. */
  nameCharsPerUid?: number;
}

export interface SdsService {
  /** StreamSecrets, DeltaSecrets and FetchSecrets for Server.addService(sdsServiceDefinition(), …). */
  readonly implementation: UntypedServiceImplementation;
  /** A copy of the counters (SdsStats). */
  stats(): SdsStats;
  /**
   * Ends every open stream (OK status) and unsubscribes it from the cache, and answers every FetchSecrets still waiting
   * for SVIDs being signed with what there is: for agent shutdown.
   */
  close(): void;
  readonly options: ResolvedSdsOptions;
}

/**
 * Builds the Envoy SDS v3 service of the agent socket (SPEC-NOTES §9–§12). Every call is admitted the same way as a
 * Workload API call: the agent must have state (else UNAVAILABLE), the caller is attested (`attest`), and a caller
 * no registration entry matches gets PERMISSION_DENIED, or UNAVAILABLE while the agent has not synced since it started
 * (unless `allowUnauthenticatedVerifiers`: then the own trust domain's validation contexts are all that resolves for
 * it). Streams are SotwStream / DeltaStream; FetchSecrets is fetchResponse. Throws invalid_argument for invalid
 * options.
 */
export function sdsHandlers(deps: SdsHandlerDeps): SdsService {
  const options = resolveSdsOptions(deps.options);
  const log = deps.log.child({ subsystem: 'sds' });
  const stats = emptyStats();
  const open = new Set<SecretStream<unknown, unknown>>();
  /** FetchSecrets calls waiting for SVIDs being signed: each ends its wait and answers now (at shutdown). */
  const waitingFetches = new Set<() => void>();
  const clock = deps.clock ?? systemClock;
  const refusals = new RefusalLog(log, clock, 'SDS', deps.callerOf);
  const waitingNames = new WaitingNamesLog(clock);
  const nameBudget = new SubscriptionBudget(deps.nameCharsPerUid);
  const recheck = callerRecheck(deps.attest);
  const signingWaitMs = deps.signingWaitMs ?? SDS_SIGNING_WAIT_MS;
  if (!Number.isFinite(signingWaitMs) || signingWaitMs < 0) throw new Error(`signingWaitMs must not be negative, got ${signingWaitMs}`);

  async function admit(call: SdsCallInfo): Promise<readonly Selector[]> {
    if (!deps.cache.ready()) throw unavailable('the agent has no identity state to serve yet');
    const selectors = await deps.attest(call);
    if (!options.allowUnauthenticatedVerifiers && !deps.cache.snapshot(selectors).entitled) {
      // State restored from the data dir may predate the caller's entry (made while the agent was down): only a sync
      // can say it has none. PERMISSION_DENIED would tell the operator to look at entries that are fine, and a client
      // that takes it as final would stop; "not yet synced" is UNAVAILABLE (SPEC-NOTES §7), as on the Workload API.
      if (!deps.cache.synced()) {
        throw notSyncedFor(selectors);
      }
      throw noIdentityFor(selectors, 'no registration entry matches the caller');
    }
    return selectors;
  }

  function refuse(error: unknown, rpc: string, call: SdsCallInfo): ReturnType<typeof toServiceError> {
    stats.deniedCalls++;
    refusals.refused(rpc, error, call);
    return toServiceError(error);
  }

  function openStream<Req, Res>(
    rpc: 'StreamSecrets' | 'DeltaSecrets',
    call: SecretStreamCall<Req, Res> & SdsCallInfo & { getDeadline(): Deadline },
    create: (ctx: StreamContext) => SecretStream<Req, Res>,
  ): void {
    admit(call).then(
      (selectors) => {
        if (call.cancelled) return;
        const gauge = rpc === 'StreamSecrets' ? 'sotwStreams' : 'deltaStreams';
        let stream: SecretStream<Req, Res> | undefined;
        const caller = deps.callerOf?.(call);
        const streamLog = log.child({ rpc, ...caller });
        const names = nameBudget.forStream(deps.accountOf !== undefined ? deps.accountOf(call) : caller?.uid);
        const ctx: StreamContext = {
          cache: deps.cache,
          selectors,
          recheck: () => recheck(call, selectors),
          options,
          log: streamLog,
          waiting: waitingNames.forStream(streamLog, { uid: caller?.uid, selectors }),
          refused: (error) => refusals.refused(rpc, error, call),
          stats,
          clock,
          signingWaitMs,
          deadline: callDeadlineOnClock(call, clock),
          names,
          onClose: () => {
            names.release();
            stats[gauge]--;
            if (stream !== undefined) open.delete(stream as SecretStream<unknown, unknown>);
          },
        };
        stream = create(ctx);
        stats.streamsOpened++;
        stats[gauge]++;
        open.add(stream as SecretStream<unknown, unknown>);
        stream.start();
      },
      (error: unknown) => {
        if (!call.cancelled) call.emit('error', refuse(error, rpc, call));
      },
    );
  }

  const implementation: UntypedServiceImplementation = {
    // Its responses are NoncedResponses, which the service definition's serializer encodes (nonced-response.ts).
    StreamSecrets(call: ServerDuplexStream<DiscoveryRequest, NoncedResponse>): void {
      openStream('StreamSecrets', call, (ctx) => new SotwStream(call, ctx));
    },
    DeltaSecrets(call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void {
      openStream('DeltaSecrets', call, (ctx) => new DeltaStream(call, ctx));
    },
    FetchSecrets(call: ServerUnaryCall<DiscoveryRequest, DiscoveryResponse>, callback: sendUnaryData<DiscoveryResponse>): void {
      admit(call).then(
        (selectors) => fetchSecrets(call, selectors, callback),
        (error: unknown) => callback(refuse(error, 'FetchSecrets', call)),
      );
    },
  };

  /**
   * Answers an admitted FetchSecrets: at once, or once the SVIDs of the caller's it names that are being signed are
   * there (or that wait is over: signing-wait.ts). A request that cannot be served as asked is refused before any wait.
   */
  function fetchSecrets(call: ServerUnaryCall<DiscoveryRequest, DiscoveryResponse>, selectors: readonly Selector[], callback: sendUnaryData<DiscoveryResponse>): void {
    const reject = (error: unknown): void => {
      stats.rejectedRequests++;
      refusals.refused('FetchSecrets', error, call);
      callback(toServiceError(error));
    };
    let query: FetchQuery;
    try {
      query = fetchQuery(call.request, options);
    } catch (error) {
      reject(error);
      return;
    }
    const answer = (waited: boolean): void => {
      let response: DiscoveryResponse;
      try {
        // The caller was attested before the wait; what answers now must still be that process (callerRecheck).
        if (waited) recheck(call, selectors);
      } catch (error) {
        callback(refuse(error, 'FetchSecrets', call));
        return;
      }
      try {
        response = fetchResponse(query, deps.cache.snapshot(selectors), options);
      } catch (error) {
        // A name the restored state does not resolve may be an entry made while the agent was down (as in admit(), and
        // a FetchJWTSVID's spiffe_id): until a sync can say it is not there, that is UNAVAILABLE (retry), not NOT_FOUND.
        if (isMeshidError(error, 'not_found') && !deps.cache.synced()) {
          callback(refuse(notSynced(error.message, { cause: error }), 'FetchSecrets', call));
          return;
        }
        reject(error);
        return;
      }
      stats.fetches++;
      callback(null, response);
    };
    const waiting = (snapshot: IdentitySnapshot): boolean => fetchAwaitsSigning(query, snapshot, options);
    const endAt = signingWaitEnd(clock, signingWaitMs, callDeadlineOnClock(call, clock));
    if (!waiting(deps.cache.snapshot(selectors)) || endAt <= clock.now()) {
      answer(false);
      return;
    }
    const stopWaiting = waitForSigning(deps.cache, selectors, waiting, clock, endAt, () => {
      waitingFetches.delete(answerNow);
      if (!call.cancelled) answer(true);
    });
    const stop = (): void => {
      waitingFetches.delete(answerNow);
      stopWaiting();
    };
    // At shutdown the caller gets what there is, as a stream gets its end, rather than the transport's cut.
    const answerNow = (): void => {
      stop();
      if (!call.cancelled) answer(true);
    };
    waitingFetches.add(answerNow);
    // A caller that gave up takes its wait with it: no subscription or timer is left for nobody.
    call.on('cancelled', stop);
    if (call.cancelled) stop();
  }

  return {
    implementation,
    options,
    stats: () => ({ ...stats }),
    close: () => {
      for (const stream of [...open]) stream.endOk();
      for (const answerNow of [...waitingFetches]) answerNow();
    },
  };
}
