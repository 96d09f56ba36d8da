/**
 * An agent whose host clock is behind meshid-server's by more than its agent SVID's remaining life: by its own clock
 * the SVID is young (so it neither renews nor re-attests), by the server's it has expired. Restarted (or reconnecting
 * after any outage), it opens a new connection with that SVID, which the server's TLS check refuses. The server says
 * why (PERMISSION_DENIED: expired by its clock, the clocks disagreeing), and the agent, whose own clock says otherwise,
 * names both clocks and the skew in an error, shows it in its ready check and keeps retrying with its backoff rather
 * than giving its identity up: once its clock is put right, it sees the SVID expired itself and asks for a new join
 * token. In-process server and agent on FakeClocks two hours apart, behind real time; node:tls judges each side's
 * peer on that side's clock (fake-clock-tls.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import { FakeClock } from '../../src/common/clock.js';
import { createLogger } from '../../src/common/log.js';
import { startInProcessCluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { healthBody, probe } from '../support/http-probe.js';
import { until } from '../support/until.js';
import { advanceUntil } from '../support/advance-until.js';

const HOUR = 3_600_000;

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: () => string[] } {
  const raw: string[] = [];
  const log = createLogger({ name: 'meshid-agent', level: 'debug', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  return { log, lines: () => raw.join('').split('\n').filter((l) => l !== '') };
}

test("an agent 2 h behind the server presents an SVID the server sees as expired: the refusal and the agent's error and ready check name the clocks, and it retries until its clock is put right", async (t) => {
  const serverClock = new FakeClock(Date.now() - 4 * HOUR);
  const agentClock = new FakeClock(serverClock.now());
  const restoreTls = judgeTlsOnClock(agentClock, serverClock);
  t.after(() => restoreTls());
  const cluster = await startInProcessCluster(serverClock, 'meshid-clock-behind-', { agent_svid_ttl: '1h' });
  t.after(() => cluster.cleanup());
  const raw = {
    socket_path: path.join(cluster.dir, 'agent.sock'),
    data_dir: path.join(cluster.dir, 'agent-data'),
    health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 },
  };
  const first = await cluster.startInProcessAgent({ ...raw, join_token: await cluster.token() }, { clock: agentClock, random: () => 0.5 });
  await until('the first sync', () => (first.status().state === 'synced' ? true : undefined));
  await first.stop();

  // The server's clock goes 2 h on (past the agent SVID's 1 h), the agent's does not: by the agent's clock its SVID
  // was signed moments ago.
  serverClock.advance(2 * HOUR);
  const { log, lines } = capturingLogger();
  const agent = await cluster.startInProcessAgent(raw, { clock: agentClock, log, random: () => 0.5 });
  const refusal = await until('the refusal', () => (agent.status().lastError?.includes('expired') ? agent.status().lastError : undefined));
  assert.match(refusal, /^must re-attest: agent \S+'s SVID expired at \S+ by meshid-server's clock, which reads /);
  assert.match(refusal, /clocks/);

  const error = await until('the clock error', () => lines().find((l) => l.includes('"level":50') && l.includes('behind meshid-server')));
  assert.match(error, /this host's clock \(\S+\) is at least 2h behind meshid-server's \(\S+\)/);
  assert.match(error, /synchronise/i);
  assert.equal(agent.status().state, 'disconnected', 'the agent keeps its identity and retries');

  const ready = await probe(agent.healthAddress()!, '/ready');
  assert.equal(ready.status, 500, ready.body);
  assert.match(String(healthBody(ready, 'agent')['reason']), /behind meshid-server's/);

  // Retries stay quiet in between (throttled), and the agent does not give up while the clocks disagree. Shown on
  // retries that did happen: each refusal names the server's clock reading, so with the server's clock a second on
  // before each, a new lastError is a new refusal handled. The agent logs (or not) before it records lastError
  // (refusedForClocks), so the lines read then are all that refusal wrote.
  const clockErrors = (): number => lines().filter((l) => l.includes('"level":50') && l.includes('behind meshid-server')).length;
  for (let retry = 1; retry <= 3; retry++) {
    serverClock.advance(1000);
    const previous = agent.status().lastError;
    await advanceUntil(agentClock, () => agent.status().lastError !== previous);
    assert.match(agent.status().lastError ?? '', new RegExp(`which reads ${new Date(serverClock.now()).toISOString()}`), `retry ${retry} refused`);
    assert.equal(agent.status().state, 'disconnected', `still retrying after retry ${retry}`);
    assert.equal(clockErrors(), 1, `retry ${retry} logged nothing more`);
  }

  // The clock put right: the agent's next retry finds its SVID expired by its own clock, and asks for a join token.
  agentClock.set(serverClock.now());
  await advanceUntil(agentClock, () => agent.status().state === 'reattest-required');
  assert.equal(agent.status().state, 'reattest-required');
});
