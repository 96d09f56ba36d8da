/**
 * Where the health check listener listens for a bind_address that is a host name: like SPIRE (Go), on the name's
 * IPv4 address when it has one, not on whatever the resolver answers first. This machine's localhost has no ::1 in
 * /etc/hosts, so a name resolving to ::1 first (Debian's and Ubuntu's localhost) is a stand-in resolver here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpHealthListener, resolveBindHost } from '../../../src/common/health/http-health-listener.js';
import { silentLogger } from '../../../src/common/log.js';
import { probe } from '../../support/http-probe.js';

const debianLocalhost = async (host: string): Promise<Array<{ address: string }>> => {
  assert.equal(host, 'localhost.stand-in');
  return [{ address: '::1' }, { address: '127.0.0.1' }];
};
const alwaysOk = { name: 'test', live: () => ({ ok: true, details: {} }), ready: () => ({ ok: true, details: {} }) };

test('a name resolving to ::1 first (stand-in resolver for Debian\'s localhost) listens on its IPv4 address: a probe of 127.0.0.1 is answered', async (t) => {
  const listener = await HttpHealthListener.start(
    { bindAddress: 'localhost.stand-in', bindPort: 0, livePath: '/live', readyPath: '/ready' },
    alwaysOk,
    silentLogger(),
    debianLocalhost,
  );
  t.after(() => listener.close());
  assert.match(listener.address, /^127\.0\.0\.1:\d+$/, 'the address logged is the one bound, not the name');
  assert.equal((await probe(`127.0.0.1:${listener.port}`, '/live')).status, 200);
});

test('resolveBindHost: an IP address as written; a name\'s first IPv4 address, else its first; a name without addresses refused', async () => {
  assert.equal(await resolveBindHost('::1', debianLocalhost), '::1');
  assert.equal(await resolveBindHost('0.0.0.0', debianLocalhost), '0.0.0.0');
  assert.equal(await resolveBindHost('localhost.stand-in', debianLocalhost), '127.0.0.1');
  assert.equal(await resolveBindHost('v6.stand-in', async () => [{ address: 'fd00::1' }, { address: '::1' }]), 'fd00::1');
  await assert.rejects(resolveBindHost('none.stand-in', async () => []), /none\.stand-in resolves to no address/);
});

test('a bind_address name that does not resolve fails the start naming the settings', async () => {
  await assert.rejects(
    HttpHealthListener.start({ bindAddress: 'name.invalid', bindPort: 0, livePath: '/live', readyPath: '/ready' }, alwaysOk, silentLogger()),
    /cannot listen on name\.invalid:0 \(health_checks\.bind_address, health_checks\.bind_port\): the host name does not resolve/,
  );
});
