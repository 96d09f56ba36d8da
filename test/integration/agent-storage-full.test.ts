/**
 * meshid-agent processes against a real meshid-server process when a disk is full: the server's (its first Attest
 * fails RESOURCE_EXHAUSTED) or the agent's own data dir (no room for the lock, or for the agent identity a join
 * token would be spent on). The full disks are real: small tmpfs mounts filled to the last byte (root only, as CI
 * runs; skipped otherwise).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Cluster, DATACENTER, startCluster, type AgentProcess } from '../support/cluster.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { AgentStore } from '../../src/agent/storage/agent-store.js';
import { silentLogger } from '../../src/common/log.js';
import { fillDisk, mountTmpfs } from '../support/tmpfs.js';

const uid = process.getuid!();

/** A cluster whose meshid-server process keeps its data dir in `serverDir`/data (a tmpfs of the test's). */
async function clusterWithServerIn(serverDir: string): Promise<Cluster> {
  const server = await startServerProcess(serverDir, ['--datacenter', DATACENTER]);
  const t = tempDir('meshid-storage-full-');
  fs.chmodSync(t.dir, 0o755);
  const cluster = new Cluster(t.dir, { adminSocket: server.adminSocket, address: () => `127.0.0.1:${server.port()}`, stop: async () => void (await server.stop()) }, t.cleanup);
  try {
    await cluster.writeBundle();
  } catch (err) {
    await cluster.cleanup();
    throw err;
  }
  return cluster;
}

/**
 * Waits until `count` lines of the agent's output match (polling a process's output); fails at once should the agent
 * exit meanwhile.
 */
async function linesMatching(agent: AgentProcess, pattern: RegExp, count: number): Promise<void> {
  for (let i = 0; ; i++) {
    if (agent.output().split('\n').filter((l) => pattern.test(l)).length >= count) return;
    if (agent.child.exitCode !== null) assert.fail(`meshid-agent exited with ${agent.child.exitCode}:\n${agent.output()}`);
    if (i > 600) assert.fail(`fewer than ${count} lines matching ${pattern}:\n${agent.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("meshid-server's disk is full (Attest answers RESOURCE_EXHAUSTED): the agent retries its first attestation until the server has room", async (t) => {
  const mnt = mountTmpfs(t, '2m');
  if (mnt === undefined) return;
  const c = await clusterWithServerIn(mnt);
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/patient', selectors: [`unix:uid:${uid}`] });
    const token = await c.token();
    const filler = fillDisk(path.join(mnt, 'data'));
    const agent = await c.startAgent({ joinToken: token, wait: false });
    // Two attempts refused and the agent still running: retried, not taken for a refusal of the token. The first is
    // told at warn level, the retries at debug.
    await linesMatching(agent, /"level":40.*"reason":"the datastore disk is full".*meshid-server cannot attest this agent now.*will retry/, 1);
    await linesMatching(agent, /"level":20.*"reason":"the datastore disk is full".*meshid-server cannot attest this agent now.*will retry/, 1);
    fs.rmSync(filler);
    await agent.waitForLog(/in sync with meshid-server/, 60_000);
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/patient']);
  } finally {
    await c.cleanup();
  }
});

test('an agent starting on a completely full data dir exits 1 naming the dir and the full disk', async (t) => {
  const mnt = mountTmpfs(t, '256k');
  if (mnt === undefined) return;
  const c = await startCluster('meshid-agent-full-dir-');
  try {
    fillDisk(mnt);
    const agent = await c.startAgent({ joinToken: await c.token(), dataDir: mnt, wait: false });
    assert.equal(await agent.exitCode(), 1);
    assert.match(agent.output(), new RegExp(`Error: FailedPrecondition: cannot lock the data dir ${mnt}: the disk is full\\.`));
    assert.doesNotMatch(agent.output(), /database or disk is full/);
  } finally {
    await c.cleanup();
  }
});

test('a data dir with no room for the agent identity: the agent exits 1 naming it before spending the join token, which works once there is room', async (t) => {
  const mnt = mountTmpfs(t, '1m');
  if (mnt === undefined) return;
  const c = await startCluster('meshid-agent-no-room-');
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/spared', selectors: [`unix:uid:${uid}`] });
    // The data dir of an agent that started before (its lock file is there), on a disk that filled up since.
    AgentStore.open(mnt, silentLogger()).close();
    const filler = fillDisk(mnt);
    const token = await c.token();
    const refused = await c.startAgent({ name: 'refused', joinToken: token, dataDir: mnt, wait: false });
    assert.equal(await refused.exitCode(), 1);
    assert.match(
      refused.output(),
      new RegExp(`Error: FailedPrecondition: the data dir ${mnt} cannot hold the agent identity: the disk is full\\. The join token was not used`),
    );
    assert.doesNotMatch(refused.output(), new RegExp(token), 'the token never reaches the output');

    fs.rmSync(filler);
    const agent = await c.startAgent({ name: 'again', joinToken: token, dataDir: mnt });
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/spared']);
  } finally {
    await c.cleanup();
  }
});
