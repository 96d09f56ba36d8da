/**
 * A uid whose reading the fair queue paused stays paused (uid-fair-queue.ts, UdsServer.pauseReading), also after Node's
 * HTTP/2 session restarts reading by itself: it stops reading while a write of its is in progress and starts again
 * once that write is done, undoing a pause made meanwhile. The agent's UdsServer, deferred decoding, fair-decoding
 * interceptor and queue, real; the service is a stand-in with a response large enough for a write to wait on a client
 * that does not read (no agent RPC answers 8 MB), and the queue's turns run only when the test says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { deferDecoding, fairDecodingInterceptor } from '../../src/agent/endpoints/fair-decoding.js';
import { UdsServer } from '../../src/agent/endpoints/uds-server.js';
import { UidFairQueue } from '../../src/agent/endpoints/uid-fair-queue.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../../src/common/grpc/server-options.js';
import { silentLogger } from '../../src/common/log.js';
import { until } from '../support/until.js';
import { rawMethod } from '../support/raw-method.js';
import { teardown } from '../support/teardown.js';

const method = (name: string): grpc.MethodDefinition<Buffer, Buffer> => rawMethod(`/stand.in.Service/${name}`);
const BIG_RESPONSE = 8 << 20;
/** An empty message, gRPC-framed. */
const EMPTY = Buffer.alloc(5);

/** The libuv stream under a net.Socket, which http2 reads directly (see UdsServer's streamHandleOf). */
function handleOf(socket: net.Socket): { readStop(): number; readStart(): number } {
  return (socket as unknown as { _handle: { readStop(): number; readStart(): number } })._handle;
}

test('a paused uid is not read after Node restarts reading its connection at the end of a write (stand-in service, 8 MB response)', { timeout: 30_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-read-pause-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const uid = process.getuid!();
  const events: string[] = [];
  const turns: Array<() => void> = [];
  let uds: UdsServer | undefined;
  // Each job reads the clock twice and the turn once: a step of 1 ms a read makes every turn one job long.
  let clock = 0;
  const queue = new UidFairQueue({
    pauser: {
      pauseReading: (u) => (events.push('pause'), uds?.pauseReading(u)),
      resumeReading: (u) => (events.push('resume'), uds?.resumeReading(u)),
    },
    onJobError: (err) => assert.fail(String(err)),
    highWaterJobs: 4,
    now: () => clock++,
    defer: (run) => turns.push(run),
  });
  const turn = (): void => turns.shift()?.();
  const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [fairDecodingInterceptor(queue, (peer) => uds?.peerOf(peer)?.uid), ...BASE_INTERCEPTORS] });
  server.addService(deferDecoding({ Big: method('Big'), Small: method('Small') }), {
    Big: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(BIG_RESPONSE)),
    Small: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0)),
  });
  uds = new UdsServer({ socketPath: path.join(dir, 'api.sock'), grpcServer: server, log: silentLogger() });
  await uds.start();
  teardown(t).after(() => uds?.close());

  const socket = net.connect(path.join(dir, 'api.sock'));
  await new Promise((resolve) => socket.once('connect', resolve));
  // Windows far above the response: what holds the agent's write back is this client not reading, not flow control.
  const session = http2.connect('http://localhost', { createConnection: () => socket, settings: { initialWindowSize: 2 * BIG_RESPONSE } });
  teardown(t).after(() => session.destroy());
  session.on('error', () => undefined);
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  session.setLocalWindowSize(4 * BIG_RESPONSE);
  const call = (name: string): Promise<number> =>
    new Promise((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': `/stand.in.Service/${name}`, 'content-type': 'application/grpc', te: 'trailers' });
      let received = 0;
      stream.on('data', (d: Buffer) => (received += d.length));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve(received));
      stream.end(EMPTY);
    });

  // The server's HTTP/2 session (grpc-js keeps it; no public accessor): its view of the client's flow-control window
  // drops as DATA frames are handed to the socket.
  const serverSession = (): http2.ServerHttp2Session =>
    [...(server as unknown as { http2Servers: Map<unknown, { sessions: Set<http2.ServerHttp2Session> }> }).http2Servers.values()].flatMap((e) => [...e.sessions])[0]!;
  // Six requests: past the high water of 4 jobs, the uid is paused.
  const big = call('Big');
  for (let i = 0; i < 5; i++) void call('Small');
  await until('the six requests queued', () => (queue.waitingJobs(uid) === 6 ? true : undefined));
  // Once: the requests past the high water were all read before the queue's next turn.
  assert.deepEqual(events, ['pause']);
  // The client stops reading, and the agent answers Big: its write waits on the client, and Node stops reading the
  // connection by itself meanwhile. Two Smalls more: three jobs left, between the low water (2) and the high (4).
  handleOf(socket).readStop();
  turn();
  turn();
  turn();
  assert.equal(queue.waitingJobs(uid), 3);
  // The agent must be writing the 8 MB when the client reads again (a write not yet started leaves nothing to undo the
  // pause, and the test passes without showing anything): wait until the server's session has sent all of Big's DATA
  // into the connection, by the window the client gave it. A client that does not read cannot take 8 MB: the write is
  // under way, and stays so until the client reads.
  const window = serverSession().state.remoteWindowSize!;
  await until('the agent writing the 8 MB', () => (window - serverSession().state.remoteWindowSize! >= BIG_RESPONSE ? true : undefined));
  // The client reads again: the agent's write completes, and Node starts reading the paused connection again.
  handleOf(socket).readStart();
  assert.ok((await big) >= BIG_RESPONSE);
  // So a request sent now is read although the uid is paused; the queue pauses it again on its arrival.
  void call('Small');
  await until('the request sent after the write queued', () => (queue.waitingJobs(uid) === 4 ? true : undefined));
  let pingAnswered = false;
  const ping = new Promise<void>((resolve) => session.ping(() => ((pingAnswered = true), events.push('ping answered'), resolve())));
  // A sentinel PING on a new connection, which the agent reads (a uid's connection opened after the pause is read until
  // its first request). It goes out after the first PING is in the kernel (the connection takes loop turns to set up),
  // and the agent, client and server in this one process, would have read a connection it reads no later than this
  // one: once the sentinel's answer is here, and its loop turn over, so would the first PING's be.
  const sentinel = http2.connect('http://localhost', { createConnection: () => net.connect(path.join(dir, 'api.sock')) });
  teardown(t).after(() => sentinel.destroy());
  sentinel.on('error', () => undefined);
  await new Promise((resolve) => sentinel.once('remoteSettings', resolve));
  await new Promise<void>((resolve) => sentinel.ping(() => resolve()));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(pingAnswered, false, 'the paused connection was read: its PING was answered');
  while (turns.length > 0) turn();
  await ping;
  assert.equal(queue.waitingJobs(uid), 0);
  assert.deepEqual(events.slice(-2), ['resume', 'ping answered']);
});
