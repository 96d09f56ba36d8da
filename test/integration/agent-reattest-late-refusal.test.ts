/**
 * An agent re-attesting after an eviction goes on signing meanwhile with the SVID the server no longer knows (a
 * workload's FetchJWTSVID): the refusal of such a call, answered after the Attest, arrives once the agent holds its
 * new identity. It is about the identity the agent gave up, not the one it holds now; taken for the new one's, it
 * made the agent give up for good (`reattest-required`, its join token already spent on the identity it dropped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, type AgentProcess } from '../support/cluster.js';
import { HoldingRelay } from '../support/holding-relay.js';
import { until } from '../support/until.js';
import { isMeshidError } from '../../src/common/errors.js';

const uid = process.getuid!();

/** Polls the agent's state (its health check's trailer) until `wanted` says yes; up to 10 s. */
async function untilState(agent: AgentProcess, what: string, wanted: (state: string | undefined) => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (wanted((await agent.healthTrailer())['meshid-agent-state'])) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}:\n${agent.output()}`);
}

test('a refusal of a call made with the evicted identity, arriving after the re-attestation, leaves the new identity in use', async () => {
  const c = await startCluster('meshid-agent-late-refusal-');
  const relay = await HoldingRelay.start(c.server.address());
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/late', selectors: [`unix:uid:${uid}`] });
    let agent = await c.startAgent({ joinToken: await c.token(), serverAddress: relay.address });
    const agentId = (): string => JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
    const firstId = agentId();
    await agent.stop();
    // Restarted with a token it has not used: kept for a re-attestation.
    agent = await c.startAgent({ joinToken: await c.token(), serverAddress: relay.address });
    await agent.waitForLog(/"msg":"in sync with meshid-server"/);

    relay.holding = true;
    await c.admin.call('Agents', 'EvictAgent', { spiffe_id: firstId });
    // The Sync stream's refusal is small and passes; the Attest's answer is held.
    await agent.waitForLog(/attesting again with the configured join token/);
    await until('the server attesting the agent again', () => (/agent attested with a join token/.test(c.server.output!()) ? true : undefined));
    await until('the Attest answer held', () => (relay.heldCount > 0 ? true : undefined));

    // A call made with the evicted SVID while the Attest answer is on its way: held on its way to the server, so that
    // it is refused only once the agent holds its new identity. (Holding the request rather than the refusal needs no
    // count of the chunks the Attest answer came in: everything the server sent so far is released whole below.)
    relay.holdRequests();
    const workload = agent.client(20_000);
    const jwt = workload.fetchJwtSvid(['late-refusal']).catch((err: unknown) => err);
    await until('the call made with the evicted SVID held', () => (relay.heldRequestCount > 0 ? true : undefined));

    relay.release();
    await agent.waitForLog(/"msg":"attested to meshid-server with a join token"/);
    await untilState(agent, 'the agent done attesting', (s) => s !== 'attesting');
    relay.releaseRequests();
    const refused = await jwt;
    workload.close();
    assert.ok(isMeshidError(refused, 'unavailable'), `the workload is told to retry, not that it has no identity: ${String(refused)}`);

    // The agent handled the server's refusal before it answered the workload (agent.ts, signJwtSvid), and a give-up
    // sets reattest-required at once, for good: a check answering 'synced' now is the final word; no real time to
    // wait for.
    await untilState(agent, 'the agent in sync with its new identity, or given up', (s) => s === 'synced' || s === 'reattest-required');
    assert.equal((await agent.healthTrailer())['meshid-agent-state'], 'synced', agent.output());
    assert.doesNotMatch(agent.output(), /no unused join token is configured/);
    assert.notEqual(agentId(), firstId);
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/late']);
  } finally {
    relay.release();
    await relay.close();
    await c.cleanup();
  }
});
