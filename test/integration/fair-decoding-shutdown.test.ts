/**
 * A request still waiting for its uid's turn when the agent's endpoint shuts down (fair-decoding.ts): a real grpc-js
 * server on a Unix socket with the agent's deferred decoding and fair-decoding interceptor, and a queue whose turns
 * run only when the test says (the uid is fixed: the test is one process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { deferDecoding, fairDecodingInterceptor } from '../../src/agent/endpoints/fair-decoding.js';
import { UidFairQueue } from '../../src/agent/endpoints/uid-fair-queue.js';
import { workloadApiServiceDefinition } from '../../src/agent/workload/handler.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../../src/common/grpc/server-options.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

test('a streaming request still queued when the endpoint closes is answered UNAVAILABLE, and its handler never starts', { timeout: 10_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-fair-shutdown-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const turns: Array<() => void> = [];
  const queue = new UidFairQueue({
    pauser: { pauseReading: () => undefined, resumeReading: () => undefined },
    onJobError: (err) => assert.fail(String(err)),
    defer: (run) => turns.push(run),
  });
  const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [fairDecodingInterceptor(queue, () => 0), ...BASE_INTERCEPTORS] });
  let handlerStarted = false;
  server.addService(deferDecoding(workloadApiServiceDefinition()), {
    FetchX509SVID: () => {
      handlerStarted = true;
    },
  });
  const socketPath = path.join(dir, 'agent.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  teardown(t).after(() => server.forceShutdown());
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  teardown(t).after(() => client.close());

  const call = client.makeServerStreamRequest('/SpiffeWorkloadAPI/FetchX509SVID', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata({}));
  call.on('data', () => assert.fail('no answer was expected'));
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => undefined);
  await until('the request waiting for its turn', () => (queue.waitingJobs(0) === 1 ? true : undefined));

  queue.close();
  while (turns.length > 0) turns.shift()!();
  const { code, details } = await status;
  assert.equal(grpc.status[code], 'UNAVAILABLE', details);
  assert.equal(details, 'meshid-agent is shutting down; retry');
  assert.equal(handlerStarted, false);
});
