/**
 * An agent SVID that expires while meshid-server is down. The agent cannot use it again (the server refuses an expired
 * client certificate), and it used to find that out only when its next reconnect came due (up to 30 s later): until
 * then it called itself `disconnected`, retrying, and logged nothing about it. It now notices at the expiry instant
 * and takes the path it takes on finding the SVID expired at a reconnect: with an unused join token configured it
 * attests again, without one it says that it needs a new token and stops renewing.
 *
 * In-process server and agent on one FakeClock; node:tls judges certificates on that clock (fake-clock-tls.ts), as the
 * test moves it past the agent SVID's hour. The expiry is placed between two reconnect attempts: the clock is moved to
 * just before it, the reconnect due then fails (the server is stopped), and the next is due only after the expiry.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { FakeClock } from '../../src/common/clock.js';
import { DATACENTER, startInProcessCluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { startInProcessServer, stopInProcessServer, type InProcessCluster } from '../support/in-process-restart.js';
import { capturingLogger, LEVEL, type LogRecord } from '../support/log-lines.js';
import { until } from '../support/until.js';
import { advanceUntil } from '../support/advance-until.js';
import type { ServerConfig } from '../../src/server/config.js';

/** The moment before the expiry the last reconnect attempt is made: the next one (750 ms later) comes after it. */
const BEFORE_EXPIRY_MS = 100;

interface Setup {
  clock: FakeClock;
  cluster: InProcessCluster;
  raw: { socket_path: string; data_dir: string };
}

async function setUp(t: TestContext, prefix: string): Promise<Setup> {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const restoreTls = judgeTlsOnClock(clock);
  t.after(() => restoreTls());
  const cluster = await startInProcessCluster(clock, prefix, { agent_svid_ttl: '1h' });
  t.after(() => cluster.cleanup());
  return { clock, cluster, raw: { socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') } };
}

/**
 * Stops the server under a synced agent and moves the clock to BEFORE_EXPIRY_MS before its SVID's notAfter, waiting
 * there for the reconnect attempt that fell due to fail: the next one is due after the expiry. Returns the notAfter
 * and the server's config (to start it again).
 */
async function disconnectedUntilJustBeforeExpiry(s: Setup, agent: MeshidAgent, records: () => LogRecord[]): Promise<{ notAfter: number; config: ServerConfig }> {
  const notAfter = agent.status().agentSvidExpiresAt!;
  const config = await stopInProcessServer(s.cluster);
  await until('the Sync stream lost', () => (agent.status().state === 'disconnected' ? true : undefined));
  const retries = (): number => records().filter((r) => /^lost the Sync stream/.test(r.msg) && r.level === LEVEL.debug).length;
  const before = retries();
  s.clock.set(notAfter - BEFORE_EXPIRY_MS);
  await until('the reconnect attempt just before the expiry failed', () => (retries() > before ? true : undefined));
  assert.equal(agent.status().state, 'disconnected');
  return { notAfter, config };
}

test('an agent SVID expiring while the server is down, with no unused join token: noticed at the expiry instant, the agent says it needs a new token', async (t) => {
  const s = await setUp(t, 'meshid-expiry-no-token-');
  const { log, records } = capturingLogger('meshid-agent');
  const agent = await s.cluster.startInProcessAgent({ ...s.raw, join_token: await s.cluster.token() }, { clock: s.clock, log, random: () => 0.5 });
  await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));
  const { notAfter } = await disconnectedUntilJustBeforeExpiry(s, agent, records);

  s.clock.advance(BEFORE_EXPIRY_MS);
  assert.equal(s.clock.now(), notAfter, 'no reconnect came due: the clock stands at the expiry');
  assert.equal(agent.status().state, 'reattest-required', 'noticed at the expiry, not at the next reconnect');
  assert.equal(agent.status().lastError, 'must re-attest: the agent SVID has expired');
  const told = records().filter((r) => r.level === LEVEL.error && /no unused join token is configured/.test(r.msg));
  assert.match(told[0]?.msg ?? '', /^the agent SVID has expired and no unused join token/, 'the line says what happened, not that the server refused it');
  assert.equal(told.length, 1, 'one error tells the operator to generate a join token');
  assert.equal(told[0]!['reason'], 'must re-attest: the agent SVID has expired');
});

test('an agent SVID expiring while the server is down, with an unused join token: the agent attests again from the expiry instant and is back in sync once the server is', async (t) => {
  const s = await setUp(t, 'meshid-expiry-token-');
  const first = await s.cluster.startInProcessAgent({ ...s.raw, join_token: await s.cluster.token() }, { clock: s.clock, random: () => 0.5 });
  await until('the first sync', () => (first.status().state === 'synced' ? true : undefined));
  await first.stop();
  // Restarted on its stored SVID with a token it has not used: kept for a re-attestation. It must outlive the hour.
  const spare = await s.cluster.admin.call('Tokens', 'GenerateJoinToken', { datacenter: DATACENTER, ttl: 7200 });
  const { log, records } = capturingLogger('meshid-agent');
  const agent = await s.cluster.startInProcessAgent({ ...s.raw, join_token: spare.token! }, { clock: s.clock, log, random: () => 0.5 });
  await until('the sync after the restart', () => (agent.status().state === 'synced' ? true : undefined));
  const { notAfter, config } = await disconnectedUntilJustBeforeExpiry(s, agent, records);

  s.clock.advance(BEFORE_EXPIRY_MS);
  assert.equal(s.clock.now(), notAfter, 'no reconnect came due: the clock stands at the expiry');
  assert.equal(agent.status().state, 'attesting', 'noticed at the expiry, not at the next reconnect');
  const told = records().filter((r) => r.level === LEVEL.warn && /attesting again with the configured join token/.test(r.msg));
  assert.match(told[0]?.msg ?? '', /^the agent SVID has expired; attesting again/);
  assert.equal(told.length, 1);
  assert.equal(told[0]!['reason'], 'must re-attest: the agent SVID has expired');

  await startInProcessServer(s.cluster, config, s.clock);
  await advanceUntil(s.clock, () => agent.status().state === 'synced');
  assert.equal(agent.status().state, 'synced', agent.status().lastError);
  assert.ok(agent.status().agentSvidExpiresAt! > notAfter, 'a new agent SVID');
});
