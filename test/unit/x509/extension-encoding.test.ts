import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basicConstraintsValue, decodeBasicConstraints, decodeKeyUsage, keyUsageValue } from '../../../src/common/x509/extensions.js';
import { DerError } from '../../../src/common/x509/der-reader.js';

test('an end-entity basicConstraints is an empty SEQUENCE even when a path length is passed: RFC 5280 puts pathLenConstraint on CAs only', () => {
  assert.deepEqual(basicConstraintsValue(false), Buffer.from([0x30, 0x00]));
  assert.deepEqual(basicConstraintsValue(false, 0), Buffer.from([0x30, 0x00]));
  assert.deepEqual(decodeBasicConstraints(basicConstraintsValue(false, 1)), { ca: false });
  assert.deepEqual(decodeBasicConstraints(basicConstraintsValue(true, 0)), { ca: true, pathLen: 0 });
});

test('a keyUsage BIT STRING claiming more than 7 unused bits is malformed and refused, not read as usages', () => {
  // digitalSignature alone, as meshid writes it: 03 02 07 80.
  assert.deepEqual(decodeKeyUsage(keyUsageValue(['digitalSignature'])), ['digitalSignature']);
  assert.deepEqual(decodeKeyUsage(Buffer.from([0x03, 0x02, 0x07, 0x80])), ['digitalSignature']);
  for (const unused of [0x08, 0x09, 0xff]) {
    assert.throws(() => decodeKeyUsage(Buffer.from([0x03, 0x02, unused, 0x80])), DerError, `unused bits ${unused}`);
  }
  assert.throws(() => decodeKeyUsage(Buffer.from([0x03, 0x00])), DerError, 'no unused-bits octet');
});
