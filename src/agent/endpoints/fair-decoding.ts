import { ServerInterceptingCall, type ServerInterceptor, type ServiceDefinition } from '@grpc/grpc-js';
import { internal, unavailable } from '../../common/errors.js';
import { MalformedRequest } from '../../common/grpc/strict-requests.js';
import { toServiceError } from '../../common/grpc-status.js';
import { peerOfCall } from './call-peer.js';
import type { UidFairQueue } from './uid-fair-queue.js';

/**
 * Request decoding on the agent socket, taken in turns per uid (uid-fair-queue.ts).
 *
 * grpc-js decodes a request as soon as its last byte arrives, before any handler or attestation, in the order the
 * bytes came. Any local process can send requests that cost milliseconds each to decode (within value-limits.ts, an
 * SDS request whose Node holds a Struct of 12,000 keys), and by sending them without pause it keeps every other
 * workload's Workload API and SDS calls waiting behind its own. So the agent's service definitions decode nothing
 * when grpc-js asks (`deferDecoding`: the request stays bytes), and `fairDecodingInterceptor` decodes each request in
 * its uid's turn and passes it on from there; the handler then runs in the same turn (a unary handler starts on the
 * half-close, which grpc-js delivers right after the message), so it is shared out too.
 *
 * The interceptor must see each request before any other interceptor that looks at requests, so it comes first in the
 * server's list, after only uidCallLimitInterceptor (which passes requests on untouched):
 * `interceptors: [uidCallLimitInterceptor(…), fairDecodingInterceptor(…), ...BASE_INTERCEPTORS, …]`.
 */

/** What a deferred deserializer hands grpc-js: the request's bytes and the decoder they wait for. */
export class UndecodedRequest {
  constructor(
    readonly bytes: Buffer,
    readonly decode: (bytes: Buffer) => unknown,
  ) {}
}

/** A copy of `definition` whose request deserializers leave the decoding to fairDecodingInterceptor. */
export function deferDecoding(definition: ServiceDefinition): ServiceDefinition {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => {
      const decode = method.requestDeserialize;
      return [name, { ...method, requestDeserialize: (bytes: Buffer) => new UndecodedRequest(bytes, decode) }];
    }),
  ) as ServiceDefinition;
}

/** The uid whose connection carries a call (`call.getPeer()`), or undefined for a connection with no record. */
export type UidOfPeer = (peer: string) => number | undefined;

/** Calls of connections with no recorded peer (which attestation then refuses) share one turn. */
const UNKNOWN_UID = -1;

/**
 * Told of each request that is no valid encoding of its type (malformed-request interceptor then refuses it), with the
 * uid that sent it: the client hears INVALID_ARGUMENT, but an operator reads the agent's log, not Envoy's.
 */
export type MalformedRequestReport = (uid: number, problem: string) => void;

/** Decodes each UndecodedRequest in the turn of its connection's uid, then passes the request on. */
export function fairDecodingInterceptor(queue: UidFairQueue, uidOf: UidOfPeer, onMalformed?: MalformedRequestReport): ServerInterceptor {
  return (_methodDescriptor, call) => {
    let cancelled = false;
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message, nextMessage) => {
            if (!(message instanceof UndecodedRequest)) {
              nextMessage(message);
              return;
            }
            const uid = uidOf(peerOfCall(call)) ?? UNKNOWN_UID;
            queue.push(uid, message.bytes.length, () => {
              // Its client gave up (deadline, cancel, closed connection) while it waited: no one wants the answer.
              if (cancelled) return;
              // The agent is stopping: the handlers have ended their streams already, and would not end this one.
              if (queue.closing) {
                call.sendStatus(toServiceError(unavailable('meshid-agent is shutting down; retry')));
                return;
              }
              let decoded: unknown;
              try {
                decoded = message.decode(message.bytes);
              } catch {
                // What grpc-js answers for a deserializer that throws; the strict deserializer never does.
                call.sendStatus(toServiceError(internal('Error deserializing request')));
                return;
              }
              if (decoded instanceof MalformedRequest) onMalformed?.(uid, decoded.error.message);
              nextMessage(decoded);
            });
          },
          onCancel: () => {
            cancelled = true;
          },
        }),
    });
  };
}
