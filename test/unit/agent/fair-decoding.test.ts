/**
 * The fair-decoding interceptor hands the uid fair queue each request with its size: the queue pauses reading a uid
 * whose waiting requests pass its bytes' high water (uid-fair-queue.ts), so a request counted smaller than it is
 * would let one uid's large requests pile up without its reading being paused. A grpc-js server on a Unix socket with
 * the real interceptor and deferred decoding; the queue is a stand-in that records what it is given and runs each job
 * at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { deferDecoding, fairDecodingInterceptor } from '../../../src/agent/endpoints/fair-decoding.js';
import type { UidFairQueue } from '../../../src/agent/endpoints/uid-fair-queue.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../../../src/common/grpc/server-options.js';
import { raw, rawMethod } from '../../support/raw-method.js';
import { teardown } from '../../support/teardown.js';

test('each request reaches the fair queue under its caller uid with its size in bytes, and is decoded once its turn runs', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-fair-decoding-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pushed: Array<{ uid: number; bytes: number }> = [];
  const queue = {
    closing: false,
    push: (uid: number, bytes: number, run: () => void) => {
      pushed.push({ uid, bytes });
      run();
    },
  } as unknown as UidFairQueue;
  const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [fairDecodingInterceptor(queue, () => 4242), ...BASE_INTERCEPTORS] });
  const received: number[] = [];
  server.addService(deferDecoding({ Echo: rawMethod('/stand.in.Service/Echo') }), {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      received.push(call.request.length);
      callback(null, Buffer.alloc(0));
    },
  });
  const socket = path.join(dir, 'api.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  teardown(t).after(() => server.forceShutdown());
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  teardown(t).after(() => client.close());

  for (const size of [1, 100_000]) {
    await new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest('/stand.in.Service/Echo', raw, raw, Buffer.alloc(size, 1), (err) => (err ? reject(err) : resolve())),
    );
  }
  assert.deepEqual(pushed, [
    { uid: 4242, bytes: 1 },
    { uid: 4242, bytes: 100_000 },
  ]);
  assert.deepEqual(received, [1, 100_000]);
});
