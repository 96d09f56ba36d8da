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

// `meshid-agent healthcheck` is what a container's probe runs: its exit status decides whether the agent is restarted
// or taken out of service, so only SERVING may exit 0, whatever else a health service answers.

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-agent-health-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

/** A stand-in agent socket whose grpc.health.v1 Check answers `status` for every service name. */
async function standIn(t: TestContext, status: string): Promise<string> {
  const socket = path.join(DIR, `health-${status}.sock`);
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto(['grpc/health/v1/health.proto']), 'grpc.health.v1.Health'), {
    Check: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { status }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  t.after(() => server.forceShutdown());
  return socket;
}

test('healthcheck exits 0 on SERVING only: UNKNOWN, SERVICE_UNKNOWN and NOT_SERVING exit 1 naming the status, with nothing on stdout', async (t) => {
  for (const status of ['UNKNOWN', 'SERVICE_UNKNOWN', 'NOT_SERVING', 'SERVING']) {
    const socket = await standIn(t, status);
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
