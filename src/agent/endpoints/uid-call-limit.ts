import http2 from 'node:http2';
import { ServerInterceptingCall, type ServerInterceptingCallInterface, type ServerInterceptor } from '@grpc/grpc-js';
import { resourceExhausted } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { Logger } from '../../common/log.js';
import { peerOfCall } from './call-peer.js';
import type { UidOfPeer } from './fair-decoding.js';
import { PerUidCap } from './per-uid-cap.js';

/**
 * Calls one uid may have open at once on the agent socket.
 *
 * grpc-js waits as long as the client likes for a call's first message, and each call it holds costs the agent ~7 KB
 * (measured: 200,000 streams of HEADERS alone took an agent from 78 MB to 1.5 GB). The connection cap
 * (max_connections_per_uid) and the stream cap per connection bound how many calls one uid can open, but their product
 * (a million) does not bound memory. So the agent counts every uid's open calls and refuses one beyond the limit at
 * once with RESOURCE_EXHAUSTED: the flooding uid is held to a few tens of MB and hurts only its own calls.
 *
 * A call counts from the moment grpc-js hands it its metadata until its HTTP/2 stream closes, however it ends (status
 * sent, cancelled, connection closed, agent shutdown). Not until its status: a client that never ends its side keeps
 * a stream open after the status, and that stream holds the memory. The agent resets such a stream (RST_STREAM
 * NO_ERROR, as RFC 9113 §8.1 allows and grpc-go does) once the status is on its way: every refusal, this one
 * included, so a refused call holds nothing, and a call grpc-js ended itself because its deadline passed, which a
 * client that ignores its own deadline (or never learns of it) would otherwise hold against its uid's limit.
 */

/**
 * Istio runs every sidecar of a node as one uid: ~110 pods, each Envoy with an SDS stream per secret (a few) and
 * pilot-agent's Workload API watchers, some hundreds of calls; 4,096 leaves a wide margin and bounds a uid at ~30 MB.
 */
export const DEFAULT_MAX_CALLS_PER_UID = 4096;

/**
 * Health checks a uid may have open at once, counted apart from its other calls: `meshid-agent healthcheck` runs as
 * some uid (root, often, as do many workloads), and a workload of that uid at its call limit would otherwise fail
 * the agent's liveness probe and have a healthy agent restarted. Far above a probe's one call at a time; a Watch
 * stream per probe still fits.
 */
export const HEALTH_CALLS_PER_UID = 64;

const HEALTH_SERVICE_PREFIX = '/grpc.health.v1.Health/';

export class UidCallLimit {
  private readonly calls: PerUidCap;
  private readonly healthChecks: PerUidCap;

  constructor(
    readonly limit: number,
    log: Logger,
  ) {
    this.calls = new PerUidCap(limit, 'the calls per uid', (uid) =>
      log.warn({ uid, limit }, 'a uid has the most calls open allowed on the workload socket; refusing its new ones (agent config max_calls_per_uid)'),
    );
    this.healthChecks = new PerUidCap(HEALTH_CALLS_PER_UID, 'the health checks per uid', (uid) =>
      log.warn({ uid, limit: HEALTH_CALLS_PER_UID }, 'a uid has the most health checks open allowed on the workload socket; refusing its new ones'),
    );
  }

  /** Counts a call of `uid` to `path` in, unless the uid is at its limit for such calls (then warns once, until it drops below). */
  admit(uid: number, path: string): boolean {
    return this.capOf(path).admit(uid);
  }

  release(uid: number, path: string): void {
    this.capOf(path).release(uid);
  }

  /** Calls of `uid` open right now, health checks apart (for tests and diagnostics). */
  openCalls(uid: number): number {
    return this.calls.count(uid);
  }

  /** What a refused caller reads: whose calls, how many, and what to change. */
  refusal(uid: number, path: string): Error {
    if (this.capOf(path) === this.healthChecks) {
      return resourceExhausted(`uid ${uid} has ${HEALTH_CALLS_PER_UID} health checks open on the meshid-agent socket, the most allowed; end some of them`);
    }
    return resourceExhausted(
      `uid ${uid} has ${this.limit} calls open on the meshid-agent socket, the most allowed (agent config max_calls_per_uid); end some of its calls or raise the limit`,
    );
  }

  private capOf(path: string): PerUidCap {
    return path.startsWith(HEALTH_SERVICE_PREFIX) ? this.healthChecks : this.calls;
  }
}

/** Calls of connections with no recorded peer (which attestation then refuses) share one count. */
const UNKNOWN_UID = -1;

/**
 * Counts each call against its uid's limit and refuses the calls beyond it (UidCallLimit). Must be the first
 * interceptor of the server: it needs grpc-js's own call, which holds the HTTP/2 stream, and a refused call must reach
 * no other interceptor (fairDecodingInterceptor would queue its request).
 */
export function uidCallLimitInterceptor(limit: UidCallLimit, uidOf: UidOfPeer): ServerInterceptor {
  const refusalsByConnection = new WeakMap<http2.Http2Session, number>();
  return (methodDescriptor, call) => {
    const path = methodDescriptor.path;
    const stream = http2StreamOf(call);
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const uid = uidOf(peerOfCall(call)) ?? UNKNOWN_UID;
            // A stream already closed has no 'close' to come; grpc-js does not start such a call, but be sure.
            if (stream === undefined || stream.destroyed) {
              nextMetadata(metadata);
              return;
            }
            if (!limit.admit(uid, path)) {
              call.sendStatus(toServiceError(limit.refusal(uid, path)));
              resetUnlessClientDone(stream);
              takeNoNewCallsAfterMany(stream, refusalsByConnection);
              return;
            }
            // `on`, not `once`: a stream emits 'close' once (when it is destroyed, which happens once), and once's
            // wrapper and its removal from the stream's listeners cost ~0.05 µs a call.
            stream.on('close', () => limit.release(uid, path));
            nextMetadata(metadata);
          },
          // grpc-js reports a call's end once its status is handed to HTTP/2, whoever sent it: the agent, or grpc-js
          // itself when the call's deadline (grpc-timeout) passed, a status no interceptor's sendStatus sees.
          onCancel: () => {
            if (stream !== undefined) resetOnceStatusSent(stream);
          },
        }),
    });
  };
}

/**
 * The HTTP/2 stream of grpc-js's own call (its `stream` field: grpc-js has no public accessor), or undefined when an
 * interceptor runs before this one or grpc-js changed; then calls are neither counted nor reset, and the tests of
 * the limit fail. The agent's start-up self-test checks it on its own connection (uds-self-test.ts): a grpc-js that
 * renamed the field would otherwise switch the limit off without a word.
 */
export function http2StreamOf(call: ServerInterceptingCallInterface): http2.ServerHttp2Stream | undefined {
  const stream = (call as unknown as { stream?: Partial<http2.ServerHttp2Stream> }).stream;
  return typeof stream?.close === 'function' && typeof stream.once === 'function' && 'headersSent' in stream ? (stream as http2.ServerHttp2Stream) : undefined;
}

/**
 * Refusals one connection may draw before it is closed gracefully (`takeNoNewCallsAfterMany`): above the calls a
 * client starts at once (a grpc-js channel's burst, an Envoy's SDS streams), so that each of them hears
 * RESOURCE_EXHAUSTED and its reason, far below the MAX_STREAMS_PER_CONNECTION a client may open before hearing of any.
 */
export const REFUSALS_PER_CONNECTION = 100;

/**
 * Closes a connection gracefully once it has drawn REFUSALS_PER_CONNECTION refusals: GOAWAY NO_ERROR, its open calls
 * go on, and it closes once they have ended. Without this, every stream a client opened became a grpc-js call only to
 * be refused (one uid filling 200 connections of 1,000 streams: 200,000 calls, the agent's heap at 1.3 GB of garbage).
 * Node refuses the streams after the GOAWAY itself (REFUSED_STREAM, which clients retry on a new connection) before
 * any object of grpc-js's or the agent's is made. HTTP/2 clients take a graceful GOAWAY as a server moving on
 * (grpc-go, grpc-js and Envoy send their next calls on a new connection).
 */
function takeNoNewCallsAfterMany(stream: http2.ServerHttp2Stream, refusals: WeakMap<http2.Http2Session, number>): void {
  const session = stream.session;
  if (session === undefined || session.closed || session.destroyed) return;
  const refused = (refusals.get(session) ?? 0) + 1;
  refusals.set(session, refused);
  if (refused >= REFUSALS_PER_CONNECTION) session.close();
}

/**
 * Closes the stream of an ended call once its status is on its way, while its client may still send. A status in the
 * response's headers (a call ended before any message) is handed to HTTP/2 at once. Trailers after messages are
 * handed over in a setImmediate of Node's own (Http2Stream.sendTrailers), so the reset is queued after it: a reset
 * sent sooner goes out ahead of the trailers, and the client never learns the status. Trailers still waiting for
 * the response's messages to go are waited for. A call whose status is not sent yet (its end reported because its
 * stream closed) has nothing to reset.
 */
function resetOnceStatusSent(stream: http2.ServerHttp2Stream): void {
  if (stream.destroyed || stream.state.remoteClose === 1) return;
  // Undefined until the response starts (a stream closed before it), whatever @types/node says.
  const headers = stream.sentHeaders as http2.OutgoingHttpHeaders | undefined;
  if (headers?.['grpc-status'] !== undefined) resetUnlessClientDone(stream);
  else if (stream.sentTrailers !== undefined) setImmediate(resetUnlessClientDone, stream);
  // A second status while the first one's trailers still wait behind messages the client has not let through (flow
  // control), e.g. grpc-js's DEADLINE_EXCEEDED after the agent's own status: grpc-js reports the end at that second
  // status, before any trailers are handed over, and not again. The trailers follow its 'wantTrailers' listener,
  // added before this one; the reset goes after them. (Without a listener of grpc-js's, none is added: Node sends
  // empty trailers only to a stream nobody listens for them on.)
  else if (stream.listenerCount('wantTrailers') > 0) stream.once('wantTrailers', () => setImmediate(resetUnlessClientDone, stream));
}

/** Closes a stream whose status has gone out while its client may still send; a client that has ended needs nothing. */
function resetUnlessClientDone(stream: http2.ServerHttp2Stream): void {
  if (stream.destroyed || stream.state.remoteClose === 1) return;
  // NO_ERROR: Node sends the reset after the status already queued, not in its place.
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}
