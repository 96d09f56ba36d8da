/**
 * SIGTERM while the first Attest is out: the server's answer spends the join token whenever it comes, so the agent
 * waits for it before it lets the data dir go, and saves the identity it brings. Stopping at once left the call
 * running with the data dir's lock released: its answer was written there afterwards, into a data dir another agent
 * may already hold.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster } from '../support/cluster.js';
import { HoldingRelay } from '../support/holding-relay.js';
import { until } from '../support/until.js';

test('SIGTERM during the first attestation: the agent waits for the answer, saves the identity under its data dir lock, and restarts with it without a token', async () => {
  const c = await startCluster('meshid-agent-stop-attest-');
  const relay = await HoldingRelay.start(c.server.address());
  try {
    relay.holding = true;
    const agent = await c.startAgent({ joinToken: await c.token(), serverAddress: relay.address, wait: false });
    // Answered by the server (the token is spent), the answer held on its way back.
    await until('the server attesting the agent', () => (/agent attested with a join token/.test(c.server.output!()) ? true : undefined));
    agent.child.kill('SIGTERM');
    await agent.waitForLog(/"msg":"shutting down"/);

    const twin = await c.startAgent({ name: 'twin', dataDir: agent.dataDir, wait: false });
    assert.equal(await twin.exitCode(), 1);
    assert.match(twin.output(), /data dir is in use by another meshid-agent/, `the stopping agent still holds its data dir:\n${twin.output()}`);
    await agent.waitForLog(/waiting for the answer to the attestation under way/);

    relay.release();
    assert.equal(await agent.exitCode(), 0, agent.output());
    const lines = agent.output().split('\n');
    const attested = lines.findIndex((l) => l.includes('"msg":"attested to meshid-server with a join token"'));
    const stopped = lines.findIndex((l) => l.includes('"msg":"meshid-agent stopped"'));
    assert.ok(attested >= 0 && attested < stopped, `attested, then stopped:\n${agent.output()}`);
    const stored = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;

    const again = await c.startAgent({ name: 'again', dataDir: agent.dataDir });
    await again.waitForLog(/"msg":"in sync with meshid-server"/);
    const listed = await c.admin.call('Agents', 'ListAgents', {});
    assert.deepEqual(listed.agents?.map((a) => a.spiffe_id), [stored], 'the agent the spent token paid for');
  } finally {
    relay.release();
    await relay.close();
    await c.cleanup();
  }
});
