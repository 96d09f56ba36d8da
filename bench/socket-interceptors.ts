/**
 * Not a target: what the agent socket's own layers cost per call (uid-call-limit.ts, fair-decoding.ts and the fair
 * queue), apart from everything else a call costs (~100 µs of the agent's CPU for a FetchX509SVID, P2), which hides
 * them in end-to-end figures. The interceptors are grpc-js's real ones over a stand-in for grpc-js's base call (its
 * HTTP/2 stream an EventEmitter, its socket behind a Proxy as Node's HTTP/2 session hands it out): a real base call
 * needs a real HTTP/2 stream, whose cost is the noise this measures below. Each call: metadata, one request, the
 * half-close, its turn of the queue, the stream's close; 64 calls of one uid a turn (64 clients), or one (1 client).
 * `node dist/bench/socket-interceptors.js`; compare two trees by running each one's, interleaved.
 */
import { EventEmitter } from 'node:events';
import { Metadata, type ServerInterceptingCallInterface, type ServerInterceptor } from '@grpc/grpc-js';
import { fairDecodingInterceptor, UndecodedRequest } from '../src/agent/endpoints/fair-decoding.js';
import { UidCallLimit, uidCallLimitInterceptor } from '../src/agent/endpoints/uid-call-limit.js';
import { UidFairQueue } from '../src/agent/endpoints/uid-fair-queue.js';
import { silentLogger } from '../src/common/log.js';
import { report, type BenchResult } from './report.js';

/** The socket as grpc-js reads it through `stream.session.socket`: a Proxy with a trap like Node's. */
const connection = { remoteAddress: 'uds-peer#1', remotePort: undefined, localAddress: undefined, localPort: undefined };
const proxiedSocket = new Proxy(
  {},
  {
    get(_target, property) {
      if (property === 'destroy' || property === 'end' || property === 'write') throw new Error('not on an HTTP/2 socket');
      return Reflect.get(connection, property);
    },
  },
);
const session = {
  get socket(): typeof proxiedSocket {
    return proxiedSocket;
  },
};

/** What a call hands the layer below it (grpc-js's InterceptingServerListener, which it does not export). */
type CallListener = Parameters<ServerInterceptingCallInterface['start']>[0];

class StandInStream extends EventEmitter {
  destroyed = false;
  headersSent = false;
  readonly state = { remoteClose: 1 };
  get session(): typeof session {
    return session;
  }
  close(): void {}
}

/** What grpc-js's BaseServerInterceptingCall offers the interceptors, reading the peer and connection as it does. */
class StandInBaseCall {
  readonly stream = new StandInStream();
  listener: CallListener | undefined;
  private readonly connectionInfo;

  constructor() {
    const socket = this.stream.session.socket as unknown as typeof connection;
    this.connectionInfo = { localAddress: socket.localAddress, localPort: socket.localPort, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
  }

  start(listener: CallListener): void {
    this.listener = listener;
  }
  getPeer(): string {
    const socket = this.stream.session.socket as unknown as typeof connection;
    if (!socket.remoteAddress) return 'unknown';
    return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
  }
  getConnectionInfo(): typeof this.connectionInfo {
    return this.connectionInfo;
  }
  sendMetadata(): void {}
  sendMessage(_message: unknown, callback: () => void): void {
    callback();
  }
  sendStatus(): void {
    this.stream.headersSent = true;
  }
  startRead(): void {}
  getDeadline(): number {
    return Infinity;
  }
  getHost(): string {
    return '';
  }
  getAuthContext(): object {
    return {};
  }
  getMetricsRecorder(): object {
    return {};
  }
}

/** Nanoseconds per call, median and best of `rounds` rounds of `calls` calls, `perTurn` calls queued a turn. */
function nanosPerCall(perTurn: number, rounds: number, calls: number): { median: number; best: number } {
  const turns: Array<() => void> = [];
  const queue = new UidFairQueue({
    pauser: { pauseReading: () => {}, resumeReading: () => {} },
    onJobError: (error) => {
      throw error;
    },
    defer: (run) => turns.push(run),
  });
  const peers = new Map([['uds-peer#1', 1000]]);
  const uidOf = (peer: string): number | undefined => peers.get(peer);
  const interceptors: ServerInterceptor[] = [uidCallLimitInterceptor(new UidCallLimit(4096, silentLogger()), uidOf), fairDecodingInterceptor(queue, uidOf)];
  const method = { path: '/SpiffeWorkloadAPI/FetchX509SVID', requestStream: false, responseStream: true, requestDeserialize: () => ({}), responseSerialize: () => Buffer.alloc(0) };
  const request = Buffer.alloc(0);
  const decode = (): object => ({});
  let received = 0;
  const handler: CallListener = { onReceiveMetadata: () => {}, onReceiveMessage: () => received++, onReceiveHalfClose: () => {}, onCancel: () => {} };
  const turnOf = (count: number): void => {
    const bases: StandInBaseCall[] = [];
    for (let i = 0; i < count; i++) {
      const base = new StandInBaseCall();
      const call = interceptors.reduce<ServerInterceptingCallInterface>((next, interceptor) => interceptor(method, next), base as unknown as ServerInterceptingCallInterface);
      call.start(handler);
      base.listener!.onReceiveMetadata(new Metadata());
      base.listener!.onReceiveMessage(new UndecodedRequest(request, decode));
      base.listener!.onReceiveHalfClose();
      bases.push(base);
    }
    while (turns.length > 0) turns.shift()!();
    for (const base of bases) base.stream.emit('close');
  };
  const perRound: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < calls / perTurn; i++) turnOf(perTurn);
    // The first round warms up.
    if (round > 0) perRound.push(Number(process.hrtime.bigint() - started) / calls);
  }
  if (received !== (rounds + 1) * calls) throw new Error(`${received} requests reached the handler, expected ${(rounds + 1) * calls}`);
  perRound.sort((a, b) => a - b);
  return { median: perRound[perRound.length >> 1]!, best: perRound[0]! };
}

export function benchSocketInterceptors(rounds: number): BenchResult[] {
  return [64, 1].flatMap((perTurn) => {
    const { median, best } = nanosPerCall(perTurn, rounds, 64_000);
    const clients = perTurn === 1 ? '1 call a turn' : `${perTurn} calls a turn`;
    return [
      { name: `agent socket call limit + fair decoding + queue per call, ${clients}, median of ${rounds} rounds`, value: median, unit: 'ns' },
      { name: `agent socket call limit + fair decoding + queue per call, ${clients}, best round`, value: best, unit: 'ns' },
    ];
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  report(benchSocketInterceptors(Number(process.env['BENCH_ROUNDS'] ?? 30)));
}
