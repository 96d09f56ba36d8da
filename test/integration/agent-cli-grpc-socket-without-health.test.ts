/**
 * meshid-agent's workload CLI pointed at a gRPC server that has neither the Workload API nor grpc.health.v1 (any
 * gRPC service but an agent's): it must say the socket is not an agent's. Telling an SDS-only agent apart asks the
 * socket's health service, and that question's own UNIMPLEMENTED went back through the same classification, asking
 * again for ever: the command never ended.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AGENT_MAIN } from '../support/cluster.js';
import { tempDir } from '../support/server-kit.js';

const { dir, cleanup } = tempDir('meshid-grpc-without-health-');
const socketPath = path.join(dir, 'other.sock');
const server = new grpc.Server();

before(async () => {
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
});

after(async () => {
  server.forceShutdown();
  cleanup();
});

/** Runs the agent CLI; kills it if it has not ended `limitMs` after its own --timeout should have ended it. */
function runBounded(args: string[], limitMs: number): Promise<{ code: number | null; err: string; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGENT_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let killed = false;
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const limit = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(limit);
      resolve({ code, err, killed });
    });
  });
}

for (const command of [['api', 'fetch', 'x509'], ['api', 'watch'], ['healthcheck']]) {
  test(`${command.join(' ')} against a gRPC server without the Workload API or a health service says the socket is not an agent's, and ends`, async () => {
    // --timeout 2s bounds each call; 20 s is the command having gone on calling past any deadline of its own.
    const r = await runBounded([...command, '--socket-path', socketPath, '--timeout', '2s'], 20_000);
    assert.equal(r.killed, false, `the command did not end by itself:\n${r.err}`);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /is not a meshid-agent socket \(it answers, but not the SPIFFE Workload API\)/);
  });
}
