/**
 * Pid namespaces between a real agent and its workloads (unshare(1), as root). The agent attests from /proc/<pid>
 * with the pid its socket reports, so /proc must be the proc file system of the agent's own pid namespace; a
 * workload in a pid namespace of its own is seen by its host pid and attested as usual.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { AGENT_MAIN, startCluster } from '../support/cluster.js';

const skip = spawnSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' }).status === 0 ? false : 'needs unshare(1) and the right to make pid namespaces';

test("an agent in a pid namespace of its own but with the host's /proc refuses to start, and its join token stays unspent", { skip }, async (t) => {
  const cluster = await startCluster('meshid-pidns-');
  t.after(() => cluster.cleanup());
  const token = await cluster.token();
  // Without --mount-proc, /proc is still the host's: /proc/<pid> for a peer's pid would be another process.
  const refused = await cluster.startAgent({ name: 'own-pidns', joinToken: token, launcher: ['unshare', '--pid', '--fork', '--kill-child'], wait: false });
  const serving = refused.waitHealthy().then(
    () => true,
    () => false,
  );
  if (await Promise.race([refused.exitCode().then(() => false), serving])) {
    await refused.stop('SIGKILL');
    assert.fail(`the agent started serving from a /proc of another pid namespace:\n${refused.output()}`);
  }
  assert.equal(await refused.exitCode(), 1, refused.output());
  assert.match(refused.output(), /\/proc belongs to another pid namespace than the agent's \(the agent is pid 1; .*run the agent in the host pid namespace/);
  assert.doesNotMatch(refused.output(), /meshid-agent is running/);
  // Refused before Attest: the token still admits an agent in the host pid namespace.
  const agent = await cluster.startAgent({ name: 'host-pidns', joinToken: token });
  await agent.stop();
});

test('an agent in a pid namespace of its own with its own /proc (--mount-proc) starts', { skip }, async (t) => {
  const cluster = await startCluster('meshid-pidns-proc-');
  t.after(() => cluster.cleanup());
  // unshare ignores SIGTERM while it waits; --kill-child takes the agent with it when it is killed.
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), launcher: ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child'] });
  assert.match(agent.output(), /"pid":1,.*meshid-agent is running/, 'pid 1 of its own namespace');
  await agent.stop('SIGKILL');
});

test('a workload in a pid namespace of its own (unshare --pid --fork) is attested by its host pid and gets its SVID', { skip }, async (t) => {
  const cluster = await startCluster('meshid-pidns-workload-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/in-pidns', selectors: [`unix:uid:${process.getuid!()}`] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });
  const child = spawn('unshare', ['--pid', '--fork', process.execPath, AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', agent.socketPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, out);
  assert.match(out, /spiffe:\/\/example\.org\/in-pidns/);
});
