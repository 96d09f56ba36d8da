import {
  credentials,
  Metadata,
  status,
  type CallOptions,
  type Client,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { failedPrecondition, unavailable, type MeshidError } from '../../common/errors.js';
import { fromServiceError } from '../../common/grpc-status.js';
import { formatDuration } from '../../common/duration.js';
import { fromStruct, loadProto } from '../../common/grpc/proto.js';
import { serviceClient } from '../../common/grpc/service.js';
import type {
  JwtBundlesResponse,
  JwtSvidResponse,
  ValidateJwtSvidResponse,
  X509BundlesResponse,
  X509SvidResponse,
} from '../workload/messages.js';
import { SECURITY_HEADER, SECURITY_HEADER_VALUE } from '../workload/security-header.js';
import { SDS_SERVICE_NAME } from '../sds/handler.js';
import { WORKLOAD_SERVICE_NAME } from '../workload/handler.js';
import { unreachableSocket } from '../../common/cli/socket-problem.js';
import { notTheExpectedApi, servedBySomethingElse, type ExpectedDaemon } from '../../common/cli/wrong-daemon.js';
import { methodNotServed } from '../../common/grpc/call-failure.js';
import { notSpeakingGrpc } from '../../common/cli/non-grpc-socket.js';
import { watchedUnaryCall, watchForStalledConnection, type StalledConnectionWatch } from '../../common/cli/stalled-connection.js';
import { ENDPOINT_SOCKET_ENV } from './endpoint-socket.js';

/**
 * A plain SPIFFE Workload API client, as any workload would write one (SPEC-NOTES §7): grpc-js, insecure channel
 * credentials on `unix:///path`, the `workload.spiffe.io: true` header on every call — no TLS, no client identity.
 * Used by the agent CLI, tests and benchmarks. Failures are MeshidErrors carrying the server's status code and
 * message (the gRPC ServiceError is the `cause`; `grpcCode(err)` reads its numeric code).
 */

const WORKLOAD_PROTO = 'workload/workload.proto';
const HEALTH_PROTO = 'grpc/health/v1/health.proto';

/** What answers on an agent socket, for telling the operator they gave another daemon's socket. */
export const AGENT_SOCKET_DAEMON: ExpectedDaemon = Object.freeze({
  daemon: 'meshid-agent',
  socket: 'meshid-agent socket',
  api: 'the SPIFFE Workload API',
  flags: `--socket-path (-socketPath) or ${ENDPOINT_SOCKET_ENV}`,
  closesOn: 'a uid that holds max_connections_per_uid connections already',
});

/** A watch that never finds anything, for a client that does not probe. */
const NO_WATCH: StalledConnectionWatch = Object.freeze({ foreign: new Promise<never>(() => undefined), stop: () => undefined });

/** Default deadline for unary calls and for the first message of a fetch. */
export const DEFAULT_TIMEOUT_MS = 5_000;
/** A watch stops reading from the socket while this many messages wait for the consumer (flow control does the rest). */
const WATCH_QUEUE_LIMIT = 16;

/** A server stream as an async iterator; `cancel()` (or leaving a for-await loop) cancels the call. */
export interface WorkloadWatch<T> extends AsyncIterableIterator<T> {
  cancel(): void;
}

export interface ValidatedJwt {
  spiffeId: string;
  claims: Record<string, unknown>;
}

export interface WorkloadApiClientOptions {
  /** Deadline for unary calls and first messages, in ms; default DEFAULT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** A connection of its own instead of one shared with every other client of the same socket. */
  ownConnection?: boolean;
  /**
   * Probe a socket whose connection is not ready in a couple of seconds, to end the call at once if another program
   * listens there (stalled-connection.ts). For the CLI's one call at a time: a thousand clients of a busy agent would
   * each add a probe connection just when it is slowest.
   */
  probeStalledConnection?: boolean;
}

type UnaryFn = (request: unknown, metadata: Metadata, options: CallOptions, callback: (err: ServiceError | null, res?: unknown) => void) => ClientUnaryCall;
type StreamFn = (request: unknown, metadata: Metadata, options?: CallOptions) => ClientReadableStream<unknown>;

export class WorkloadApiClient {
  private readonly workload: Client;
  private health_: Client | undefined;
  private readonly timeoutMs: number;
  private readonly channelOptions: Record<string, number>;
  private readonly probeStalled: boolean;

  constructor(
    readonly socketPath: string,
    options: WorkloadApiClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.probeStalled = options.probeStalledConnection ?? false;
    const Ctor = serviceClient(loadProto(WORKLOAD_PROTO), 'SpiffeWorkloadAPI');
    this.channelOptions = options.ownConnection ? { 'grpc.use_local_subchannel_pool': 1 } : {};
    this.workload = new Ctor(`unix://${socketPath}`, credentials.createInsecure(), this.channelOptions);
  }

  /** FetchX509SVID's first message; the stream is cancelled once it arrives. */
  fetchX509Svid(): Promise<X509SvidResponse> {
    return this.first(this.watchX509Svids(this.deadline()));
  }

  /** FetchX509SVID as a stream of full-state messages, until cancelled or the server ends it. */
  watchX509Svids(options: CallOptions = {}): WorkloadWatch<X509SvidResponse> {
    return this.watch<X509SvidResponse>('FetchX509SVID', options);
  }

  fetchX509Bundles(): Promise<X509BundlesResponse> {
    return this.first(this.watchX509Bundles(this.deadline()));
  }

  watchX509Bundles(options: CallOptions = {}): WorkloadWatch<X509BundlesResponse> {
    return this.watch<X509BundlesResponse>('FetchX509Bundles', options);
  }

  fetchJwtBundles(): Promise<JwtBundlesResponse> {
    return this.first(this.watchJwtBundles(this.deadline()));
  }

  watchJwtBundles(options: CallOptions = {}): WorkloadWatch<JwtBundlesResponse> {
    return this.watch<JwtBundlesResponse>('FetchJWTBundles', options);
  }

  /** FetchJWTSVID: one token per entitled identity, or only `spiffeId`'s. */
  fetchJwtSvid(audience: readonly string[], spiffeId?: string): Promise<JwtSvidResponse> {
    const request: Record<string, unknown> = { audience: [...audience] };
    if (spiffeId !== undefined) request['spiffe_id'] = spiffeId;
    return this.unary<JwtSvidResponse>(this.workload, 'FetchJWTSVID', request, true);
  }

  /** ValidateJWTSVID, with the claims Struct turned back into a plain object. */
  async validateJwtSvid(audience: string, svid: string): Promise<ValidatedJwt> {
    const res = await this.unary<Partial<ValidateJwtSvidResponse>>(this.workload, 'ValidateJWTSVID', { audience, svid }, true);
    return { spiffeId: res.spiffe_id ?? '', claims: fromStruct(res.claims) };
  }

  /**
   * grpc.health.v1.Health/Check on the same socket (no security header: not a Workload API call). Ask for
   * WORKLOAD_SERVICE_NAME to be sure the socket is an agent's: any gRPC server answers "", and one without that
   * service (meshid-server's admin socket) answers NOT_FOUND, reported as served by something else. Given several
   * names, the status of the first one the socket knows: an agent serving only SDS (disable_workload_api) knows only
   * SDS_SERVICE_NAME.
   */
  async health(...services: string[]): Promise<string> {
    if (this.health_ === undefined) {
      const Ctor = serviceClient(loadProto(HEALTH_PROTO), 'grpc.health.v1.Health');
      this.health_ = new Ctor(`unix://${this.socketPath}`, credentials.createInsecure(), this.channelOptions);
    }
    let notFound: unknown;
    for (const service of services.length === 0 ? [''] : services) {
      try {
        const res = await this.unary<{ status?: string }>(this.health_, 'Check', { service }, false);
        // proto3 leaves the zero enum value (UNKNOWN) out of the decoded message.
        return res.status ?? 'UNKNOWN';
      } catch (err) {
        if (service === '' || grpcCode(err) !== status.NOT_FOUND) throw err;
        notFound = err;
      }
    }
    throw servedBySomethingElse(this.socketPath, AGENT_SOCKET_DAEMON, notFound);
  }

  close(): void {
    this.workload.close();
    this.health_?.close();
  }

  private deadline(): CallOptions {
    // A deadline is wall-clock by nature; it bounds how long a CLI waits, not any identity decision.
    return { deadline: new Date(Date.now() + this.timeoutMs) };
  }

  private unary<T>(client: Client, method: string, request: unknown, secured: boolean): Promise<T> {
    const fn = (client as unknown as Record<string, UnaryFn>)[method]!;
    return watchedUnaryCall<T>(
      this.stalledConnectionWatch(client),
      (callback) => fn.call(client, request, secured ? securityMetadata() : new Metadata(), this.deadline(), callback),
      (err) => this.translate(err),
    );
  }

  /**
   * A watch on the Workload API connection for a call the caller runs itself (a stream with no deadline, which a
   * listener that never finishes an HTTP/2 frame would hold forever); NO_WATCH unless probeStalledConnection.
   */
  stalledConnectionWatch(client: Client = this.workload): StalledConnectionWatch {
    return this.probeStalled ? watchForStalledConnection(client.getChannel(), this.socketPath, AGENT_SOCKET_DAEMON) : NO_WATCH;
  }

  private async first<T>(watch: WorkloadWatch<T>): Promise<T> {
    const stalled = this.stalledConnectionWatch(this.workload);
    try {
      const next = await Promise.race([watch.next(), stalled.foreign]);
      if (next.done === true) throw unavailable('the Workload API stream ended without a message');
      return next.value;
    } finally {
      stalled.stop();
      watch.cancel();
    }
  }

  private watch<T>(method: string, options: CallOptions): WorkloadWatch<T> {
    const fn = (this.workload as unknown as Record<string, StreamFn>)[method]!;
    const call = fn.call(this.workload, {}, securityMetadata(), options) as ClientReadableStream<T>;
    return streamIterator(call, (err) => this.translate(err));
  }

  /**
   * A failure of this client's own connection to the socket (no socket, nobody listening on it, no permission) is
   * rewritten to name the socket. Only those: grpc-js reports them as UNAVAILABLE whose text is the connect error
   * on this path ("connect ENOENT /run/meshid/api.sock"). An UNAVAILABLE the agent sent — say its own link to
   * meshid-server is down, "connect ECONNREFUSED 10.0.0.5:8081" — keeps its code and text: the socket was fine.
   */
  private async translate(err: ServiceError): Promise<MeshidError> {
    // A call that never got a connection: the socket may belong to a program that does not speak gRPC at all.
    const foreign = await notSpeakingGrpc(this.socketPath, AGENT_SOCKET_DAEMON, err, { ms: this.timeoutMs, flag: '--timeout' });
    if (foreign !== undefined) return foreign;
    if (err.code === status.UNAVAILABLE && connectFailedOn(err.details ?? '', this.socketPath)) {
      return unreachableSocket('the Workload API', this.socketPath, err.details ?? '', {
        wrongPath: `pass the agent socket's own path in --socket-path or ${ENDPOINT_SOCKET_ENV}`,
        permission: 'the socket or its directory does not admit this user',
        down: `is meshid-agent running? Pass --socket-path or set ${ENDPOINT_SOCKET_ENV}`,
      }, err);
    }
    if (err.code === status.DEADLINE_EXCEEDED) {
      // grpc-js's text says where its own machinery stood when time ran out ("waiting for name resolution", "waiting
      // for LB pick"), which reads as a DNS problem on a Unix socket; what the user set was a timeout for the agent.
      return unavailable(
        `the agent on ${this.socketPath} did not answer within the timeout (${formatDuration(this.timeoutMs)}): ` +
          'is meshid-agent running and not overloaded? A longer --timeout gives it more time',
        err,
      );
    }
    if (methodNotServed(err)) {
      // An agent started with disable_workload_api knows SDS alone; anything else (meshid-server's admin socket, any
      // other gRPC server) answers but is no agent. Asked only for a Workload API call: the health check that asks is
      // translated here too, and on a server without a health service it would ask again, for ever.
      const workloadCall = (err.details ?? '').includes(`/${WORKLOAD_SERVICE_NAME}/`);
      const sdsOnly = workloadCall && (await this.health(SDS_SERVICE_NAME).then(() => true, () => false));
      if (sdsOnly) return failedPrecondition(`the meshid-agent on ${this.socketPath} serves Envoy SDS only, not the Workload API: it runs with disable_workload_api (--disable-workload-api)`, err);
      return notTheExpectedApi(this.socketPath, AGENT_SOCKET_DAEMON, err);
    }
    return fromServiceError(err);
  }
}

/** Opens a client for the agent socket at `socketPath` (an absolute path). Call close() when done. */
export function connectWorkloadApi(socketPath: string, options: WorkloadApiClientOptions = {}): WorkloadApiClient {
  return new WorkloadApiClient(socketPath, options);
}

/** The numeric gRPC status behind an error from this client (or a raw ServiceError), if there is one. */
export function grpcCode(err: unknown): number | undefined {
  const candidate = (err as { cause?: unknown })?.cause ?? err;
  const code = (candidate as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** Whether grpc-js's text for a failed call is the error of connecting to `socketPath`: "connect ENOENT <path>". */
function connectFailedOn(details: string, socketPath: string): boolean {
  return new RegExp(`\\bconnect E[A-Z]+ ${socketPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`).test(details);
}

function securityMetadata(): Metadata {
  const md = new Metadata();
  md.set(SECURITY_HEADER, SECURITY_HEADER_VALUE);
  return md;
}

function streamIterator<T>(call: ClientReadableStream<T>, translate: (err: ServiceError) => Promise<MeshidError>): WorkloadWatch<T> {
  const queue: T[] = [];
  let failure: MeshidError | undefined;
  let done = false;
  let cancelled = false;
  /** An error is being translated (which may look at the socket): the stream's 'end' does not end the iteration yet. */
  let translating = false;
  const over = (): boolean => done && (!translating || cancelled);
  let waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;

  const settle = (): void => {
    if (waiter === undefined) return;
    const w = waiter;
    if (queue.length > 0) {
      waiter = undefined;
      w.resolve({ value: queue.shift() as T, done: false });
    } else if (failure !== undefined) {
      waiter = undefined;
      w.reject(failure);
    } else if (over()) {
      waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  };
  call.on('data', (message: T) => {
    queue.push(message);
    if (queue.length >= WATCH_QUEUE_LIMIT) call.pause();
    settle();
  });
  call.on('error', (err: ServiceError) => {
    // Our own cancel() ends the call with CANCELLED: that is the end of the iteration, not a failure.
    if (cancelled && err.code === status.CANCELLED) {
      done = true;
      settle();
      return;
    }
    // Translating may look at the socket first (a call that never connected): the iteration ends once it knows why.
    translating = true;
    void translate(err).then((translated) => {
      translating = false;
      if (!cancelled) failure = translated;
      done = true;
      settle();
    });
  });
  call.on('end', () => {
    done = true;
    settle();
  });

  const iterator: WorkloadWatch<T> = {
    next(): Promise<IteratorResult<T>> {
      if (queue.length > 0) {
        const value = queue.shift() as T;
        if (queue.length < WATCH_QUEUE_LIMIT && call.isPaused()) call.resume();
        return Promise.resolve({ value, done: false });
      }
      if (failure !== undefined) {
        const f = failure;
        failure = undefined;
        return Promise.reject(f);
      }
      if (over()) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    return(): Promise<IteratorResult<T>> {
      iterator.cancel();
      return Promise.resolve({ value: undefined, done: true });
    },
    cancel(): void {
      if (cancelled || done) {
        done = true;
        return;
      }
      cancelled = true;
      done = true;
      call.cancel();
      settle();
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
