/**
 * A real meshid-agent process started with --allow-unauthenticated-verifiers: a process no entry matches (uid 65534)
 * gets the trust bundle from the agent's CLI, and still no identity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { AGENT_MAIN, startCluster } from '../support/cluster.js';

function runAsNobody(args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [AGENT_MAIN, ...args], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

test('with --allow-unauthenticated-verifiers, a process no entry matches fetches the bundle but no SVID', async (t) => {
  const cluster = await startCluster('meshid-verifiers-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/test-runner', selectors: [`unix:uid:${process.getuid!()}`] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--allow-unauthenticated-verifiers'] });

  const bundle = await runAsNobody(['api', 'fetch', 'bundle', '--socket-path', agent.socketPath]);
  assert.equal(bundle.code, 0, bundle.out);
  assert.deepEqual(pemToDerList(bundle.out), pemToDerList(cluster.bundlePem), 'the trust domain\'s roots');

  const svid = await runAsNobody(['api', 'fetch', 'x509', '--socket-path', agent.socketPath]);
  assert.notEqual(svid.code, 0);
  assert.match(svid.out, /PermissionDenied/, svid.out);
});
