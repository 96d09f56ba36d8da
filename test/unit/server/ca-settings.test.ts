/**
 * What the CA takes from the server config (caSettingsFrom), seen in what it signs and publishes: the settings that
 * differ from their defaults here are the ones whose loss would not show under the defaults.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

test('an agent SVID TTL longer than the workloads\' maximum: the intermediate is replaced while it can still cover a whole agent SVID', async (t) => {
  const dir = tempDir('meshid-ca-settings-');
  t.after(dir.cleanup);
  const { ca, clock, close } = await openTestCa(dir.dir, { default_x509_svid_ttl: '1h', agent_svid_ttl: '2d', intermediate_ttl: '7d' });
  t.after(close);
  const { publicKey } = generateKeyPair('ec-p256');
  const first = ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/meshid/agent/a', ttlMs: 2 * DAY });
  // 1.5 days left on the first intermediate: enough for workload SVIDs (1 h), not for an agent SVID (2 d).
  clock.advance(5 * DAY + 12 * HOUR);
  await ca.rotateNow();
  const renewed = ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/meshid/agent/a', ttlMs: 2 * DAY });
  assert.notEqual(renewed.authorityId, first.authorityId, 'signed by the successor intermediate');
  assert.equal(renewed.notAfter, clock.now() + 2 * DAY);
});

test('the own bundle carries the configured refresh hint, not the default', async (t) => {
  const dir = tempDir('meshid-ca-settings-');
  t.after(dir.cleanup);
  const { ca, close } = await openTestCa(dir.dir, { bundle_endpoint_refresh_hint: '10m' });
  t.after(close);
  assert.equal(ca.bundle().refreshHintSeconds, 600);
});
