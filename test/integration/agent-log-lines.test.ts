/**
 * What an agent logs of its link to meshid-server, as an operator reads it (outages, rotation): an in-process
 * MeshidServer and MeshidAgent on one FakeClock, so hours (and the renewals falling due in them) pass in seconds. The clock starts 20 hours in the
 * past: every certificate lies inside the real-time validity window the TLS layer checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { FakeClock } from '../../src/common/clock.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startInProcessCluster } from '../support/cluster.js';
import { startInProcessServer, stopInProcessServer } from '../support/in-process-restart.js';
import { capturingLogger, LEVEL } from '../support/log-lines.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;

test('a server down for 13 h, across a renewal, costs one warning for the Sync stream, one for signing and one for the agent SVID renewal; the retries go to debug; the reconnect says how long it failed', async (t) => {
  const clock = new FakeClock(Date.now() - 20 * HOUR);
  const cluster = await startInProcessCluster(clock, 'meshid-outage-log-');
  teardown(t).after(() => cluster.cleanup());
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
  // The agent SVID's renewal fell due at its half-life too, and is retried about every minute since.
  assert.equal(lines(/^cannot renew the agent SVID/, LEVEL.warn), 1, 'one warning when the agent SVID renewal fails');
  assert.ok(lines(/^cannot renew the agent SVID/, LEVEL.debug) >= 10, 'each retry at debug');
  const renewWarning = during.find((r) => /^cannot renew the agent SVID/.test(r.msg) && r.level === LEVEL.warn)!;
  assert.equal(renewWarning['err'], undefined, 'an outage is told by its reason, not a stack trace');
  assert.match(String(renewWarning['reason']), /cannot reach meshid-server/);

  await startInProcessServer(cluster, config, clock);
  const synced = await until('the reconnect', () => {
    clock.advance(30_000);
    return records().find((r) => r.msg === 'in sync with meshid-server' && r['failingFor'] !== undefined);
  });
  assert.equal(synced.level, LEVEL.info);
  assert.match(String(synced['failingFor']), /^13h/);
  assert.ok(Number(synced['failedAttempts']) > 10);
  const renewed = await until('the agent SVID renewal', () => {
    clock.advance(30_000);
    return records().find((r) => r.msg === 'agent SVID renewed');
  });
  assert.equal(renewed.level, LEVEL.info);
  assert.match(String(renewed['failingFor']), /^1h/, 'the renewal says how long it failed');
});

test('a rotation is logged at info with when the next one is due, and each SVID at debug with its serial, expiry and renewal; the agent SVID renewal with its serial', async (t) => {
  const clock = new FakeClock(Date.now() - 20 * HOUR);
  const cluster = await startInProcessCluster(clock, 'meshid-rotation-log-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/app', selectors: [`unix:uid:${process.getuid!()}`] });
  const { log, records } = capturingLogger('meshid-agent');
  const socketPath = path.join(cluster.dir, 'agent-socket', 'api.sock');
  // random 0.5: no jitter, renewals fall at half-life.
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: socketPath, data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, log, random: () => 0.5 },
  );
  await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));
  const client = connectWorkloadApi(socketPath);
  teardown(t).after(() => client.close());
  const servedSerial = async (): Promise<string> => parseCertificate(splitConcatenatedDer((await client.fetchX509Svid()).svids![0]!.x509_svid!)[0]!).serialHex;
  const first = await servedSerial();
  const agentSvidBefore = agent.status().agentSvidExpiresAt!;

  clock.advance(12 * HOUR + 60_000);
  await until('the agent SVID renewal', () => (agent.status().agentSvidExpiresAt! > agentSvidBefore ? true : undefined));
  await until('the workload SVID renewal', () => records().find((r) => r.msg === 'X509-SVID issued' && r['serial'] !== first));
  const renewed = await servedSerial();
  assert.notEqual(renewed, first);

  const lines = records();
  const svid = lines.find((r) => r.msg === 'X509-SVID issued' && r['serial'] === renewed)!;
  assert.equal(svid.level, LEVEL.debug);
  assert.equal(svid['spiffeId'], 'spiffe://example.org/app');
  const notAfter = Date.parse(String(svid['notAfter']));
  const renewAt = Date.parse(String(svid['renewAt']));
  assert.ok(renewAt > clock.now() && renewAt < notAfter, `renewal at ${String(svid['renewAt'])}, before expiry at ${String(svid['notAfter'])}`);
  const batches = lines.filter((r) => r.msg === 'X509-SVIDs issued');
  assert.equal(batches.length, 2, 'the first issue and the renewal');
  assert.deepEqual(batches.map((r) => r.level), [LEVEL.info, LEVEL.info]);
  assert.equal(batches[1]!['nextRenewalAt'], svid['renewAt']);

  const agentRenewal = lines.find((r) => r.msg === 'agent SVID renewed')!;
  assert.equal(agentRenewal.level, LEVEL.info);
  assert.match(String(agentRenewal['serial']), /^[0-9a-f]+$/);
  assert.ok(Date.parse(String(agentRenewal['renewAt'])) < Date.parse(String(agentRenewal['notAfter'])));
});
