import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attestSource } from '../../../src/server/api/attest-source.js';

test('Attest attempts are counted per IPv4 address and per IPv6 /64, whatever the port or spelling', () => {
  assert.equal(attestSource('127.0.0.1:53211'), '127.0.0.1');
  assert.equal(attestSource('::ffff:10.1.2.3:40000'), '10.1.2.3', 'an IPv4-mapped address is its IPv4 address');
  assert.equal(attestSource('2001:db8:1:2:aaaa:bbbb:cccc:dddd:443'), '2001:db8:1:2::/64');
  assert.equal(attestSource('2001:db8:1:2::1:443'), '2001:db8:1:2::/64', 'the same /64 spelt with ::');
  assert.equal(attestSource('2001:db8::ffff:1.2.3.4:443'), '2001:db8:0:0::/64', ':: in the upper half, a dotted tail');
  assert.notEqual(attestSource('2001:db8:1:3::1:443'), attestSource('2001:db8:1:2::1:443'), 'another /64 is another source');
  assert.equal(attestSource('::1:8443'), '0:0:0:0::/64');
  assert.equal(attestSource('fe80::1%eth0:8443'), 'fe80:0:0:0::/64', 'a zone is not part of the address');
});
