import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { healthcheckCommand } from '../../../src/agent/cli/healthcheck.js';
import { captureIo } from '../cli/capture-io.js';
import { WORKLOAD_SERVICE_NAME } from '../../../src/agent/workload/handler.js';
import { SDS_SERVICE_NAME } from '../../../src/agent/sds/handler.js';

// `meshid-agent healthcheck` is what a container's probe runs: its exit status decides whether the agent is restarted
// or taken out of service, so only SERVING may exit 0, whatever else a health service answers.

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-agent-health-'));
let sockets = 0;
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

/**
 * A stand-in agent socket whose grpc.health.v1 Check answers `status` for every service name (undefined: an empty
 * message, which proto3 reads as UNKNOWN), or as `answer` says per service name (undefined: NOT_FOUND).
 */
async function standIn(t: TestContext, status: string | undefined, answer?: (service: string) => string | undefined): Promise<string> {
  const socket = path.join(DIR, `health-${sockets++}.sock`);
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto(['grpc/health/v1/health.proto']), 'grpc.health.v1.Health'), {
    Check: (call: { request: { service?: string } }, callback: grpc.sendUnaryData<unknown>) => {
      if (answer === undefined) return callback(null, status === undefined ? {} : { status });
      const found = answer(call.request.service ?? '');
      return found === undefined ? callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' }) : callback(null, { status: found });
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  t.after(() => server.forceShutdown());
  return socket;
}

test('healthcheck exits 0 on SERVING only: UNKNOWN (sent, or an empty answer), SERVICE_UNKNOWN and NOT_SERVING exit 1 naming the status, with nothing on stdout', async (t) => {
  for (const sent of ['UNKNOWN', undefined, 'SERVICE_UNKNOWN', 'NOT_SERVING', 'SERVING']) {
    const status = sent ?? 'UNKNOWN';
    const socket = await standIn(t, sent);
    for (const output of ['pretty', 'json']) {
      const io = captureIo({});
      const code = await healthcheckCommand(['--socket-path', socket, '--output', output, '--timeout', '5s'], io);
      if (status === 'SERVING') {
        assert.deepEqual([code, io.out()], [0, output === 'json' ? `${JSON.stringify({ status: 'SERVING' }, null, 2)}\n` : 'Agent is healthy.\n'], io.err());
        continue;
      }
      assert.equal(code, 1, `${status} ${output}`);
      assert.equal(io.out(), '', `${status} ${output}`);
      assert.match(io.err(), new RegExp(`^Error: Unavailable: agent is not healthy: status ${status} \\(`), `${status} ${output}`);
    }
  }
});

test('an agent serving SDS only (no Workload API health service) is healthy on its SDS status; a socket knowing neither is not an agent', async (t) => {
  const sdsOnly = await standIn(t, undefined, (service) => (service === SDS_SERVICE_NAME ? 'SERVING' : undefined));
  const io = captureIo({});
  assert.equal(await healthcheckCommand(['--socket-path', sdsOnly, '--timeout', '5s'], io), 0, io.err());
  assert.equal(io.out(), 'Agent is healthy.\n');

  const sdsStopping = await standIn(t, undefined, (service) => (service === SDS_SERVICE_NAME ? 'NOT_SERVING' : undefined));
  const stopping = captureIo({});
  assert.equal(await healthcheckCommand(['--socket-path', sdsStopping, '--timeout', '5s'], stopping), 1);
  assert.match(stopping.err(), /^Error: Unavailable: agent is not healthy: status NOT_SERVING/);

  // The Workload API's own status comes first: an agent serving it is asked nothing else.
  const both = await standIn(t, undefined, (service) => (service === WORKLOAD_SERVICE_NAME ? 'NOT_SERVING' : service === SDS_SERVICE_NAME ? 'SERVING' : undefined));
  const workloadFirst = captureIo({});
  assert.equal(await healthcheckCommand(['--socket-path', both, '--timeout', '5s'], workloadFirst), 1);
  assert.match(workloadFirst.err(), /status NOT_SERVING/);

  const neither = await standIn(t, undefined, () => undefined);
  const other = captureIo({});
  assert.equal(await healthcheckCommand(['--socket-path', neither, '--timeout', '5s'], other), 1);
  assert.equal(other.out(), '');
  assert.doesNotMatch(other.err(), /healthy/);
});
