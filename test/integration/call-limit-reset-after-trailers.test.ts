/**
 * uid-call-limit resets a stream whose client keeps its side open once the call's status is out, and never ahead of
 * the status: a real grpc-js server over a Unix socket with the real interceptor, a stand-in bidi service, and a raw
 * HTTP/2 client that holds the response back by flow control (initial window 0) until it says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { UidCallLimit, uidCallLimitInterceptor } from '../../src/agent/endpoints/uid-call-limit.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../../src/common/grpc/server-options.js';
import { silentLogger } from '../../src/common/log.js';
import { rawMethod } from '../support/raw-method.js';
import { teardown } from '../support/teardown.js';

const STREAM = rawMethod('/stand.in.Service/Stream', { requestStream: true, responseStream: true });

/** Two PING round trips: whatever the server sent before answering the second has arrived. */
async function settled(session: http2.ClientHttp2Session): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise((resolve) => session.ping(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

test('a stream ended by the service and then by its deadline while its response waits on flow control gets its first status, then is reset and counted out', { timeout: 30_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-reset-order-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const limit = new UidCallLimit(10, silentLogger());
  const UID = 4242;
  let ended: Promise<void> | undefined;
  // The call as an interceptor further in sees it: its status goes straight on, not behind the handler's write.
  let inner: grpc.ServerInterceptingCallInterface | undefined;
  const capture: grpc.ServerInterceptor = (_method, call) => ((inner = call), new grpc.ServerInterceptingCall(call));
  const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [uidCallLimitInterceptor(limit, () => UID), capture, ...BASE_INTERCEPTORS] });
  server.addService({ Stream: STREAM }, {
    Stream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      // grpc-js reports the call's end (the call's 'cancelled') at the second status, its deadline's.
      ended = new Promise((resolve) => call.once('cancelled', () => resolve()));
      call.once('data', () => {
        call.write(Buffer.alloc(64 << 10));
        inner!.sendStatus({ code: grpc.status.FAILED_PRECONDITION, details: 'stand-in refusal', metadata: new grpc.Metadata() });
      });
    },
  });
  const socketPath = path.join(dir, 'api.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  teardown(t).after(() => server.forceShutdown());

  // Window 0: not a byte of the response's message goes until the client raises it.
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath), settings: { initialWindowSize: 0 } });
  teardown(t).after(() => session.destroy());
  session.on('error', () => undefined);
  const stream = session.request(
    { ':method': 'POST', ':path': STREAM.path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' },
    { endStream: false },
  );
  stream.on('error', () => undefined);
  const seen: string[] = [];
  let bytes = 0;
  stream.on('data', (d: Buffer) => (bytes += d.length));
  stream.on('trailers', (trailers) => seen.push(`status ${String(trailers['grpc-status'])} after ${bytes} bytes`));
  const closed = new Promise<void>((resolve) => stream.on('close', () => (seen.push(`closed ${stream.rstCode}`), resolve())));
  stream.write(Buffer.alloc(5));

  while (ended === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
  await ended;
  assert.equal(limit.openCalls(UID), 1);
  // The client lets the response through, and never ends its side.
  session.settings({ initialWindowSize: 1 << 20 });
  await new Promise<void>((resolve) => stream.once('trailers', () => resolve()));
  await settled(session);
  await Promise.race([closed, settled(session)]);
  assert.deepEqual(seen, [`status ${grpc.status.FAILED_PRECONDITION} after ${5 + (64 << 10)} bytes`, `closed ${http2.constants.NGHTTP2_NO_ERROR}`]);
  assert.equal(limit.openCalls(UID), 0);
});
