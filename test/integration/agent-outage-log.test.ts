/**
 * What an agent logs while meshid-server is down: an in-process MeshidServer and MeshidAgent on one FakeClock, so
 * hours of outage (and the renewals falling due in them) pass in a few seconds. The clock starts 20 hours in the
 * past: every certificate lies inside the real-time validity window the TLS layer checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { startInProcessCluster } from '../support/cluster.js';
import { startInProcessServer, stopInProcessServer } from '../support/in-process-restart.js';
import { capturingLogger, LEVEL } from '../support/log-lines.js';
import { until } from '../support/until.js';

const HOUR = 3_600_000;

test('a server down for 13 h, across a renewal, costs one warning for the Sync stream and one for signing; the retries go to debug; the reconnect says how long it failed', async (t) => {
  const clock = new FakeClock(Date.now() - 20 * HOUR);
  const cluster = await startInProcessCluster(clock, 'meshid-outage-log-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/app', selectors: [`unix:uid:${process.getuid!()}`] });
  const { log, records } = capturingLogger('meshid-agent');
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, 'agent-socket', 'api.sock'), data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, log, random: () => 0.5 },
  );
  await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));

  const config = await stopInProcessServer(cluster);
  // Past the X509-SVID's half-life: its renewal falls due while the server is down. Then an hour, a minute at a time,
  // for the Sync stream's and the signing's retries.
  clock.advance(12 * HOUR + 60_000);
  for (let minute = 0; minute < 60; minute++) {
    await new Promise((r) => setTimeout(r, 30));
    clock.advance(60_000);
  }
  const during = records();
  const lines = (msg: RegExp, level: number): number => during.filter((r) => msg.test(r.msg) && r.level === level).length;
  assert.equal(lines(/^lost the Sync stream/, LEVEL.warn), 1, 'one warning when the stream is lost');
  assert.ok(lines(/^lost the Sync stream/, LEVEL.debug) >= 10, 'each retry at debug');
  assert.equal(lines(/^cannot get X509-SVIDs signed/, LEVEL.warn), 1, 'one warning when signing fails');
  assert.ok(lines(/^cannot get X509-SVIDs signed/, LEVEL.debug) >= 3, 'each retry at debug');
  const signingWarning = during.find((r) => /^cannot get X509-SVIDs signed/.test(r.msg) && r.level === LEVEL.warn)!;
  assert.equal(signingWarning['err'], undefined, 'an outage is told by its reason, not a stack trace');
  assert.match(String(signingWarning['reason']), /cannot reach meshid-server/);

  await startInProcessServer(cluster, config, clock);
  const synced = await until('the reconnect', () => {
    clock.advance(30_000);
    return records().find((r) => r.msg === 'in sync with meshid-server' && r['failingFor'] !== undefined);
  });
  assert.equal(synced.level, LEVEL.info);
  assert.match(String(synced['failingFor']), /^13h/);
  assert.ok(Number(synced['failedAttempts']) > 10);
});
