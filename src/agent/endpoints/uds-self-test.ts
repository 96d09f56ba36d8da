import * as grpc from '@grpc/grpc-js';
import { failedPrecondition, internal } from '../../common/errors.js';
import { installedGrpcJsVersion } from '../../common/grpc/grpc-js-version.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { PeerInfo } from '../attestor/peer-credentials.js';
import { peerOfCall } from './call-peer.js';
import { http2StreamOf } from './uid-call-limit.js';

/**
 * The start-up self-test of the peer-credential wiring: a private gRPC server with one method answers the caller's
 * `call.getPeer()` and what the peer table holds for it; the agent calls it over its own socket and expects its own
 * pid back. If a grpc-js release stops passing the socket's remoteAddress through getPeer(), every workload would be
 * an "unknown peer": better to refuse to start with a message that says why. The socket's interceptors read the same
 * key from the call's connection info instead (peerOfCall); a grpc-js where the two differ would count every uid's
 * calls and turns as one unknown uid's, so the private server checks that they agree before its handler runs. It also
 * checks that its first interceptor gets grpc-js's own call with its HTTP/2 stream (http2StreamOf), which the per-uid
 * call limit counts and resets calls by: a grpc-js that renamed that private field would switch the limit off.
 */

const METHOD = '/meshid.agent.internal.UdsSelfTest/WhoAmI';
const TIMEOUT_MS = 5_000;
const identity = (b: Buffer): Buffer => b;

interface Answer {
  peer: string;
  pid: number | null;
}

/**
 * Refuses the call (FAILED_PRECONDITION) when the call grpc-js hands its first interceptor has no HTTP/2 stream that
 * http2StreamOf finds. Must be the server's first interceptor, as uidCallLimitInterceptor is the workload server's.
 */
const callStreamReachable: grpc.ServerInterceptor = (_method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          if (http2StreamOf(call) !== undefined) {
            nextMetadata(metadata);
            return;
          }
          const details =
            `the installed @grpc/grpc-js (${installedGrpcJsVersion()}) no longer gives a server interceptor its call's HTTP/2 stream ` +
            '(the private field "stream"), by which the agent counts and resets each uid\'s calls (max_calls_per_uid): without it ' +
            'one local process could hold the agent\'s memory with open calls. Install the dependency versions meshid was released ' +
            'with: npm ci (it follows package-lock.json), not npm install or npm update';
          call.sendStatus(toServiceError(failedPrecondition(details)));
        },
      }),
  });

/** Refuses the call (FAILED_PRECONDITION) when peerOfCall does not name the connection getPeer() names. */
const peerOfCallAgrees: grpc.ServerInterceptor = (_method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          const fromInfo = peerOfCall(call);
          const fromPeer = call.getPeer();
          if (fromInfo === fromPeer) {
            nextMetadata(metadata);
            return;
          }
          const details =
            `grpc-js reported call.getConnectionInfo().remoteAddress = ${JSON.stringify(fromInfo)} but call.getPeer() = ${JSON.stringify(fromPeer)}; ` +
            'this grpc-js version breaks the per-uid call limit and fair queue';
          call.sendStatus(toServiceError(failedPrecondition(details)));
        },
      }),
  });

/** The private server whose injector the UdsServer uses for its own self-test connection. */
export function createSelfTestServer(peerOf: (peer: string) => PeerInfo | undefined): grpc.Server {
  const server = new grpc.Server({ interceptors: [callStreamReachable, peerOfCallAgrees] });
  const method = {
    path: METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  } as const;
  server.addService({ whoAmI: method }, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const peer = call.getPeer();
      const answer: Answer = { peer, pid: peerOf(peer)?.pid ?? null };
      callback(null, Buffer.from(JSON.stringify(answer)));
    },
  });
  return server;
}

/** Calls the self-test method over `socketPath`; resolves when the answer names this process, throws otherwise. */
export async function runSelfTest(socketPath: string, peerPattern: RegExp): Promise<void> {
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  let answer: Answer;
  try {
    const reply = await new Promise<Buffer>((resolve, reject) => {
      // A transport deadline, not time logic: a wedged self-test must fail start-up instead of hanging it.
      const deadline = new Date(Date.now() + TIMEOUT_MS);
      client.makeUnaryRequest(METHOD, identity, identity, Buffer.alloc(0), { deadline }, (err, value) =>
        err || value === undefined ? reject(err ?? new Error('empty reply')) : resolve(value),
      );
    });
    answer = JSON.parse(reply.toString('utf8')) as Answer;
  } catch (err) {
    if ((err as { code?: unknown }).code === grpc.status.UNIMPLEMENTED) {
      // The connection went to the real server: the listener did not recognise it as coming from this process.
      throw internal(`Unix socket self-test failed: our own connection was not recognised by its peer credentials (expected pid ${process.pid})`, err);
    }
    if ((err as { code?: unknown }).code === grpc.status.FAILED_PRECONDITION) {
      throw internal(`Unix socket self-test failed: ${(err as { details?: string }).details}`, err);
    }
    throw internal(`Unix socket self-test failed: cannot call our own socket ${socketPath}: ${(err as Error).message}`, err);
  } finally {
    client.close();
  }
  if (!peerPattern.test(answer.peer)) {
    throw internal(
      `Unix socket self-test failed: grpc-js reported call.getPeer() = ${JSON.stringify(answer.peer)} instead of the ` +
        'injected socket remoteAddress; this grpc-js version breaks workload attestation',
    );
  }
  if (answer.pid !== process.pid) {
    throw internal(`Unix socket self-test failed: our own connection was seen as pid ${answer.pid}, expected ${process.pid}`);
  }
}
