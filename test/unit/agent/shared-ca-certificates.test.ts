import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedCaCertificate } from '../../../src/agent/cache/shared-ca-certificates.js';

test('equal CA certificate bytes share one Buffer, which later changes to the input do not reach', () => {
  const a = Buffer.from('intermediate certificate bytes (a)');
  const first = sharedCaCertificate(a);
  assert.notEqual(first, a, 'the first sighting is copied');
  assert.equal(sharedCaCertificate(Buffer.from(a)), first);
  a.fill(0);
  assert.equal(first.toString(), 'intermediate certificate bytes (a)');
  assert.notEqual(sharedCaCertificate(Buffer.from('another intermediate')), first);
});

test('the pool stays bounded: after many distinct certificates the first is copied afresh', () => {
  const first = sharedCaCertificate(Buffer.from('rotated-away intermediate'));
  for (let i = 0; i < 100; i++) sharedCaCertificate(Buffer.from(`intermediate ${i}`));
  const again = sharedCaCertificate(Buffer.from('rotated-away intermediate'));
  assert.notEqual(again, first);
  assert.ok(again.equals(first));
});
