import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { GrpcHealthService } from '../../common/grpc/health-service.js';
import { loadProto } from '../../common/grpc/proto.js';
import { addReflection } from '../../common/grpc/reflection.js';
import { serviceOf } from '../../common/grpc/service.js';
import type { Logger } from '../../common/log.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { PeerCredentials, PeerInfo } from '../attestor/peer-credentials.js';
import type { WorkloadCache } from '../cache/workload-cache.js';
import { SDS_PROTO, SDS_SERVICE_NAME, sdsHandlers, sdsServiceDefinition, type SdsService } from '../sds/handler.js';
import type { SdsOptions } from '../sds/sds-options.js';
import {
  WORKLOAD_PROTO,
  WORKLOAD_SERVICE_NAME,
  workloadApiHandlers,
  workloadApiServiceDefinition,
  type WorkloadApiService,
} from '../workload/handler.js';
import type { WorkloadApiOptions } from '../workload/workload-context.js';
import { peerAttestation, workloadSecurityHeaderInterceptor } from './interceptors.js';
import { callerFields, type CallerOf } from './refusal-log.js';
import { UdsServer } from './uds-server.js';
import { deferDecoding, fairDecodingInterceptor } from './fair-decoding.js';
import { UidFairQueue } from './uid-fair-queue.js';
import { DEFAULT_MAX_CALLS_PER_UID, UidCallLimit, uidCallLimitInterceptor } from './uid-call-limit.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../../common/grpc/server-options.js';
import { assertSafeDirectory } from '../../common/safe-directory.js';
import { createDirectory, directoryCreationError } from '../../common/create-directory.js';

const HEALTH_PROTO = 'grpc/health/v1/health.proto';

/**
 * HTTP/2 streams one connection may have open at once, advertised in SETTINGS_MAX_CONCURRENT_STREAMS. Without it
 * (nghttp2's default is unlimited) one connection could open streams that never send a message, each held by the
 * agent (~7 KB) until the connection closes. grpc-js and Envoy clients queue calls beyond it rather than fail them,
 * and Envoy's pool opens another connection when a peer's limit is reached (SPIRE's agent sets none: grpc-go's default
 * is unlimited).
 * Envoy without ADS opens one SDS stream per secret it subscribes to on one connection, so 1,000 leaves room for
 * hundreds of secrets. A client that ignores the setting has its connection closed (PROTOCOL_ERROR).
 */
export const MAX_STREAMS_PER_CONNECTION = 1000;

export interface WorkloadEndpointOptions {
  /** Absolute path of the Unix socket. */
  socketPath: string;
  cache: WorkloadCache;
  /** The workload attestor (UnixWorkloadAttestor in the agent). */
  attestor: { attest(peer: PeerInfo): readonly Selector[] };
  log: Logger;
  clock: Clock;
  sds?: SdsOptions;
  workload?: WorkloadApiOptions;
  /**
   * Which APIs the socket serves (the agent's disable_workload_api and disable_sds_api; default both). A turned-off
   * API is not registered: its calls get grpc-js's UNIMPLEMENTED, and neither health nor reflection names it.
   */
  apis?: { workload: boolean; sds: boolean };
  /**
   * Facts sent as trailing metadata of every Health/Check answer (keys prefixed `meshid-`), e.g. how long until the
   * oldest SVID expires: health probes see why an agent is or is not healthy without a separate API.
   */
  healthDetail?: () => Record<string, string>;
  /**
   * Whether the socket serves workloads, as grpc.health.v1 answers it (SERVING / NOT_SERVING); default: the cache
   * has state to serve.
   */
  serving?: () => boolean;
  /** Peer-credential addon replacement, for tests. */
  credentials?: PeerCredentials;
  /** See UdsServerOptions.maxConnectionsPerUid. */
  maxConnectionsPerUid?: number;
  /** Calls one uid may have open at once; default DEFAULT_MAX_CALLS_PER_UID (uid-call-limit.ts). */
  maxCallsPerUid?: number;
  /** See UdsServerOptions.accountOf: whose per-uid budgets a uid spends. */
  accountOf?: (uid: number) => number;
}

/**
 * The agent's workload endpoint (WL-Endpoint; SPEC-NOTES §7): one grpc-js Server carrying the SPIFFE Workload API,
 * Envoy SDS v3, grpc.health.v1.Health and server reflection, fed only by connections the UdsServer accepted on the
 * socket (it is never bound itself). Every Workload API and SDS call is attested from the connection's peer
 * credentials (`peerAttestation`: an unknown peer fails closed); the `workload.spiffe.io` header is checked by the
 * interceptor before the request is decoded or attested, after only the per-uid call limit (see interceptors.ts).
 * Health is SERVING once the cache has state to serve.
 */
export class WorkloadEndpoint {
  private constructor(
    private readonly server: grpc.Server,
    private readonly uds: UdsServer,
    private readonly workload: WorkloadApiService,
    private readonly sds: SdsService,
    private readonly fairQueue: UidFairQueue,
    private readonly health: GrpcHealthService,
    private readonly log: Logger,
  ) {}

  static async start(o: WorkloadEndpointOptions): Promise<WorkloadEndpoint> {
    const log = o.log.child({ subsystem: 'endpoint' });
    // The queue and the socket server need each other: the queue pauses a uid's connections, and the interceptor
    // finds the uid of a call's connection; both are only called once requests arrive.
    let uds: UdsServer | undefined;
    const fairQueue = new UidFairQueue({
      pauser: { pauseReading: (uid) => uds?.pauseReading(uid), resumeReading: (uid) => uds?.resumeReading(uid) },
      onJobError: (err) => log.error({ err }, 'a request failed outside its call'),
    });
    // One line per uid a minute: the uid is the kernel's, so a client cannot dodge the throttle by varying it.
    const malformed = new LogThrottle(o.clock);
    const reportMalformed = (uid: number, problem: string): void => {
      const admitted = malformed.admit(String(uid));
      if (admitted !== undefined) log.warn({ uid, reason: problem, ...admitted }, 'refused a request that is not a valid encoding of its type (INVALID_ARGUMENT)');
    };
    // A subordinate uid's calls spend its owner's budgets (SubordinateIds), as its connections do.
    const uidOf = (peer: string): number | undefined => uds?.accountOf(peer);
    const callLimit = new UidCallLimit(o.maxCallsPerUid ?? DEFAULT_MAX_CALLS_PER_UID, log);
    const server = new grpc.Server({
      ...BASE_SERVER_OPTIONS,
      'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
      // The call limit first: it holds grpc-js's own call (the HTTP/2 stream), and a call it refuses must not reach the
      // fair queue. Fair decoding next, before every interceptor that looks at a request. The header check last: it
      // looks only at metadata, and no message is read until the metadata has passed every interceptor.
      interceptors: [uidCallLimitInterceptor(callLimit, uidOf), fairDecodingInterceptor(fairQueue, uidOf, reportMalformed), ...BASE_INTERCEPTORS, workloadSecurityHeaderInterceptor],
    });
    // Every service here is reachable by any local process: each request is decoded in its uid's turn.
    const services = { addService: (definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) => server.addService(deferDecoding(definition), implementation) };
    uds = new UdsServer({
      socketPath: o.socketPath,
      setting: '--socket-path, socket_path',
      grpcServer: server,
      log,
      ...(o.credentials !== undefined ? { credentials: o.credentials } : {}),
      ...(o.maxConnectionsPerUid !== undefined ? { maxConnectionsPerUid: o.maxConnectionsPerUid } : {}),
      ...(o.accountOf !== undefined ? { accountOf: o.accountOf } : {}),
    });
    const socket = uds;
    const attest = peerAttestation({ peerOf: (peer) => socket.peerOf(peer), attestor: o.attestor, retire: (peer) => socket.retire(peer) });
    const callerOf: CallerOf = (call) => {
      const peer = socket.peerOf(call.getPeer());
      return peer === undefined ? undefined : callerFields(peer);
    };
    const workload = workloadApiHandlers({
      cache: o.cache,
      attest,
      log: o.log,
      clock: o.clock,
      callerOf,
      ...(o.workload !== undefined ? { options: o.workload } : {}),
    });
    const sds = sdsHandlers({ cache: o.cache, attest, log: o.log, clock: o.clock, callerOf, accountOf: (call) => socket.accountOf(call.getPeer()), ...(o.sds !== undefined ? { options: o.sds } : {}) });
    const apis = o.apis ?? { workload: true, sds: true };
    if (apis.workload) services.addService(workloadApiServiceDefinition({ log: o.log, clock: o.clock }), workload.implementation);
    if (apis.sds) services.addService(sdsServiceDefinition({ log: o.log, clock: o.clock }), sds.implementation);
    const served = [...(apis.workload ? [WORKLOAD_SERVICE_NAME] : []), ...(apis.sds ? [SDS_SERVICE_NAME] : [])];
    const health = new GrpcHealthService({ services: served, serving: o.serving ?? (() => o.cache.ready()), clock: o.clock, daemon: 'meshid-agent' });
    services.addService(serviceOf(loadProto(HEALTH_PROTO), 'grpc.health.v1.Health'), healthWithDetail(o, health));
    addReflection(services, [...(apis.workload ? [WORKLOAD_PROTO] : []), ...(apis.sds ? [SDS_PROTO] : [])], log);
    prepareSocketDir(path.dirname(o.socketPath), log);
    await socket.start();
    return new WorkloadEndpoint(server, socket, workload, sds, fairQueue, health, log);
  }

  /**
   * The first step of the agent's stop: grpc.health.v1 answers NOT_SERVING from now on and its Watch streams end,
   * while workloads are still served until close().
   */
  stopServing(): void {
    this.health.shutdown();
  }

  /**
   * Ends every stream (Workload API: UNAVAILABLE so clients reconnect; SDS: OK), drains the gRPC server briefly,
   * then closes the socket and removes its file.
   */
  async close(): Promise<void> {
    // Before the handlers close: a request still waiting for its turn is answered UNAVAILABLE, not started after.
    this.fairQueue.close();
    this.health.shutdown();
    this.workload.close();
    this.sds.close();
    await new Promise<void>((resolve) => {
      // A transport grace period for in-flight unary calls, not time logic.
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await this.uds.close();
    this.log.debug('workload endpoint closed');
  }
}

function healthWithDetail(o: WorkloadEndpointOptions, health: GrpcHealthService): grpc.UntypedServiceImplementation {
  const base = health.implementation;
  const check = base['Check'] as grpc.handleUnaryCall<unknown, unknown>;
  return {
    ...base,
    Check: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      check(call, (err, value) => {
        const trailer = new grpc.Metadata();
        for (const [k, v] of Object.entries(o.healthDetail?.() ?? {})) trailer.set(`meshid-${k}`, v);
        callback(err, value, trailer);
      });
    },
  };
}

/**
 * Workloads of other users must be able to reach the socket (SPEC-NOTES §7: any local UID may connect; refusal is by
 * attestation, not EACCES), so every directory the agent creates on the way is 0755 whatever the umask. A directory
 * that already exists is the operator's: it is left alone, with a warning when others cannot search it. Either way
 * no other user may be able to tamper with it (assertSafeDirectory): who can replace the socket can serve workloads
 * false identities and bundles, and a symlink swapped in would turn the chmod after bind against another file.
 */
function prepareSocketDir(dir: string, log: Logger): void {
  assertSafeDirectory(dir, 'workload socket directory');
  let first: string | undefined;
  try {
    first = createDirectory(dir, 0o755);
  } catch (err) {
    throw directoryCreationError(err, dir, 'workload socket directory', '--socket-path, socket_path');
  }
  if (first !== undefined) {
    for (let d = dir; ; d = path.dirname(d)) {
      fs.chmodSync(d, 0o755);
      if (d === first || d === path.dirname(d)) break;
    }
    assertSafeDirectory(dir, 'workload socket directory');
    return;
  }
  const mode = fs.statSync(dir).mode;
  if ((mode & 0o001) === 0) log.warn({ dir, mode: (mode & 0o777).toString(8) }, 'the socket directory is not searchable by other users; their workloads cannot connect');
}
