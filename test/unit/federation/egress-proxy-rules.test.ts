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

test('a NO_PROXY port that is not a port number matches no port, as in Go: the entry exempts nothing', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'corp.example:abc, 192.168.1.7:https, [fd00::2]:x443, partner.example' };
  for (const port of [443, 8443, 80]) {
    assert.equal(via(env, 'corp.example', port), 'http://p:1', `corp.example:${port}`);
    assert.equal(via(env, 'a.corp.example', port), 'http://p:1', `a.corp.example:${port}`);
    assert.equal(via(env, '192.168.1.7', port), 'http://p:1', `192.168.1.7:${port}`);
    assert.equal(via(env, '[fd00::2]', port), 'http://p:1', `[fd00::2]:${port}`);
  }
  assert.equal(via(env, 'partner.example'), 'direct', 'the entries after it are still read');
});

test('a NO_PROXY port is compared as written (0443 is not 443); a colon with no port after it means every port', () => {
  assert.equal(via({ HTTPS_PROXY: 'http://p:1', NO_PROXY: 'corp.example:0443' }, 'corp.example', 443), 'http://p:1');
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'corp.example:, [fd00::2]:' };
  assert.equal(via(env, 'corp.example', 8443), 'direct');
  assert.equal(via(env, '[fd00::2]', 8443), 'direct');
});

test('a NO_PROXY entry with a port and no host is ignored, as Go ignores it', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: ':8443' };
  assert.equal(via(env, 'partner.example.', 8443), 'http://p:1', 'a fully qualified name ends in "." but is not exempted');
  assert.equal(via(env, 'partner.example', 8443), 'http://p:1');
});

test('a NO_PROXY address matches by value, as Go compares addresses: however an IPv6 address is written, and IPv4 as IPv4-mapped', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'fd00:0:0::1, 10.0.0.1:8443, ::ffff:192.168.1.9' };
  assert.equal(via(env, '[fd00::1]'), 'direct');
  assert.equal(via(env, '[::ffff:10.0.0.1]', 8443), 'direct');
  assert.equal(via(env, '[::ffff:10.0.0.1]', 443), 'http://p:1', 'the port still has to match');
  assert.equal(via(env, '192.168.1.9'), 'direct');
  assert.equal(via(env, '[fd00::2]'), 'http://p:1');
  assert.equal(via(env, '10.0.0.2', 8443), 'http://p:1');
});

test('a NO_PROXY domain written in Unicode matches the endpoint, whose host the URL parser gives in punycode, as in Go', () => {
  const env = { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'bücher.example, .straße.example' };
  assert.equal(via(env, new URL('https://Bücher.example/').hostname), 'direct');
  assert.equal(via(env, new URL('https://bundles.straße.example/').hostname), 'direct');
  assert.equal(via(env, 'other.example'), 'http://p:1');
});
