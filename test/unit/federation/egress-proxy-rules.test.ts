/** HTTPS_PROXY and NO_PROXY forms beyond the common ones, each read as Go's net/http (httpproxy) reads it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { egressProxyFromEnv, proxyFor, withoutPassword } from '../../../src/server/federation/egress-proxy.js';

const via = (env: NodeJS.ProcessEnv, host: string, port = 443): string => {
  const found = proxyFor(egressProxyFromEnv(env), host, port);
  return found === undefined ? 'direct' : found instanceof Error ? `error: ${found.message}` : withoutPassword(found);
};

test('an empty HTTPS_PROXY or NO_PROXY counts as unset, so the lower-case one is read', () => {
  assert.equal(via({ HTTPS_PROXY: '', https_proxy: 'http://lower:1' }, 'partner.example'), 'http://lower:1');
  assert.equal(via({ HTTPS_PROXY: 'http://p:1', NO_PROXY: '', no_proxy: 'partner.example' }, 'partner.example'), 'direct');
  assert.equal(via({ HTTPS_PROXY: 'http://p:1', no_proxy: 'partner.example' }, 'partner.example'), 'direct', 'no_proxy alone');
  assert.equal(egressProxyFromEnv({ HTTPS_PROXY: '' }), undefined);
});

test('host names and NO_PROXY entries match whatever their case', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'CORP.Example, partner.example' };
  assert.equal(via(env, 'a.corp.example'), 'direct');
  assert.equal(via(env, 'Partner.EXAMPLE'), 'direct');
  assert.equal(via(env, 'other.example'), 'http://p:1');
});

test('IPv4-mapped loopback is never proxied; a mapped routable address is', () => {
  const env = { HTTPS_PROXY: 'http://p:1' };
  assert.equal(via(env, '[::ffff:127.0.0.1]'), 'direct');
  assert.equal(via(env, '[::ffff:10.0.0.1]'), 'http://p:1');
});

test('a bare IPv6 NO_PROXY entry matches that address on every port; an IP entry with a port only on that port', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'fd00::2, 192.168.1.7:8443' };
  assert.equal(via(env, '[fd00::2]', 8443), 'direct');
  assert.equal(via(env, '[fd00::3]'), 'http://p:1');
  assert.equal(via(env, '192.168.1.7', 8443), 'direct');
  assert.equal(via(env, '192.168.1.7', 443), 'http://p:1');
});

test('a CIDR entry with an impossible prefix is no CIDR block, and does not stop the server reading NO_PROXY', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: '10.0.0.0/33, corp.example' };
  assert.doesNotThrow(() => egressProxyFromEnv(env));
  assert.equal(via(env, '10.1.2.3'), 'http://p:1');
  assert.equal(via(env, 'corp.example'), 'direct');
  assert.equal(via({ HTTPS_PROXY: 'http://p:1', NO_PROXY: 'fd00::/129' }, '[fd00::1]'), 'http://p:1');
});

test('a malformed %-escape in the password is found when HTTPS_PROXY is read, as one in the user name is', () => {
  const egress = egressProxyFromEnv({ HTTPS_PROXY: 'http://ops:sec%zzret@127.0.0.1:3128' })!;
  assert.ok(egress.proxy instanceof Error);
  assert.equal(egress.proxy.message, 'HTTPS_PROXY has a user name or password with a malformed %-escape: encode "%" as %25');
});
