import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basicConstraintsValue, decodeBasicConstraints, decodeKeyUsage, keyIdentifierOfSpki, keyUsageValue } from '../../../src/common/x509/extensions.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
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

test('the key identifier of a SubjectPublicKeyInfo with a field after its key is refused, not computed from the key alone', () => {
  const spki = generateKeyPair('ec-p256').publicKey.export({ format: 'der', type: 'spki' });
  assert.equal(keyIdentifierOfSpki(spki).length, 20);
  // The same SEQUENCE with a NULL appended inside it (short-form length: a P-256 SPKI is 89 bytes).
  assert.equal(spki[0], 0x30);
  assert.ok(spki[1]! < 0x7e);
  const extra = Buffer.concat([Buffer.from([0x30, spki[1]! + 2]), spki.subarray(2), Buffer.from([0x05, 0x00])]);
  assert.throws(() => keyIdentifierOfSpki(extra), DerError);
});
