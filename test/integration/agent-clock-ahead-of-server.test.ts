/**
 * An agent whose host clock is ahead of meshid-server's by more than a workload SVID's lifetime: every SVID the
 * server signs has expired by the agent's clock when it arrives, so none is accepted and those served run out. The
 * agent keeps asking with its backoff (the clocks may be put right), but says so at error level naming both clocks,
 * the skew and what to do, and its ready check fails with the same words until an SVID is accepted again.
 * In-process server and agent on FakeClocks two hours apart, behind real time; node:tls judges each side's peer on
 * that side's clock (fake-clock-tls.ts).
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

const HOUR = 3_600_000;

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: () => string[] } {
  const raw: string[] = [];
  const log = createLogger({ name: 'meshid-agent', level: 'debug', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  return { log, lines: () => raw.join('').split('\n').filter((l) => l !== '') };
}

test("an agent 2 h ahead of the server, whose workload SVIDs last 1 h: an error names both clocks and the skew, the ready check fails with it, and the agent keeps asking", async (t) => {
  const serverClock = new FakeClock(Date.now() - 4 * HOUR);
  const agentClock = new FakeClock(serverClock.now() + 2 * HOUR);
  const restoreTls = judgeTlsOnClock(agentClock, serverClock);
  t.after(() => restoreTls());
  const cluster = await startInProcessCluster(serverClock, 'meshid-clock-ahead-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${process.getuid!()}`], x509SvidTtl: 3600 });
  const { log, lines } = capturingLogger();
  const agent = await cluster.startInProcessAgent(
    {
      join_token: await cluster.token(),
      socket_path: path.join(cluster.dir, 'agent.sock'),
      data_dir: path.join(cluster.dir, 'agent-data'),
      health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 },
    },
    { clock: agentClock, log, random: () => 0.5 },
  );
  const errorLines = (): string[] => lines().filter((l) => l.includes('"level":50') && l.includes('ahead of meshid-server'));
  const error = await until('the clock error', () => errorLines()[0]);
  assert.match(error, /this host's clock \(\S+\) is at least (1h5\dm\d+s|2h(\d+s)?) ahead of meshid-server's \(\S+\)/);
  assert.match(error, /valid for 1h/);
  assert.match(error, /Synchronise this host's clock/);
  assert.equal(agent.status().svids, 0);

  const ready = await probe(agent.healthAddress()!, '/ready');
  assert.equal(ready.status, 500, ready.body);
  assert.match(String(healthBody(ready, 'agent')['reason']), /ahead of meshid-server's/);

  // The agent asks again at its backoff; the error is not repeated for each answer.
  const warnings = (): number => lines().filter((l) => l.includes('X509-SVID not issued')).length;
  const before = warnings();
  for (let i = 0; i < 20 && warnings() === before; i++) {
    agentClock.advance(5_000);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(warnings() > before, 'the agent asked again');
  assert.equal(errorLines().length, 1);
});
