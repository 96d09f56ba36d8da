import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sourceKey } from '../../../src/server/source-key.js';

test('a source is an IPv4 address or an IPv6 /64, whatever the port or spelling', () => {
  assert.equal(sourceKey('127.0.0.1:53211'), '127.0.0.1');
  assert.equal(sourceKey('::ffff:10.1.2.3:40000'), '10.1.2.3', 'an IPv4-mapped address is its IPv4 address');
  assert.equal(sourceKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd:443'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8:1:2::1:443'), '2001:db8:1:2::/64', 'the same /64 spelt with ::');
  assert.equal(sourceKey('2001:db8::ffff:1.2.3.4:443'), '2001:db8:0:0::/64', ':: in the upper half, a dotted tail');
  assert.notEqual(sourceKey('2001:db8:1:3::1:443'), sourceKey('2001:db8:1:2::1:443'), 'another /64 is another source');
  assert.equal(sourceKey('::1:8443'), '0:0:0:0::/64');
  assert.equal(sourceKey('fe80::1%eth0:8443'), 'fe80:0:0:0::/64', 'a zone is not part of the address');
});
