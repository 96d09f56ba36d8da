import { test } from 'node:test';
import assert from 'node:assert/strict';
import { privateKeyMatchesSpki } from '../../../src/common/x509/key-match.js';
import { exportPkcs8Der, generateKeyPair, spkiDer, type KeyType } from '../../../src/common/x509/keys.js';

for (const type of ['ec-p256', 'ec-p384', 'rsa-2048'] as KeyType[]) {
  test(`${type}: a PKCS#8 key matches its own SPKI and no other`, () => {
    const mine = generateKeyPair(type);
    const other = generateKeyPair(type);
    const pkcs8 = exportPkcs8Der(mine.privateKey);
    assert.equal(privateKeyMatchesSpki(pkcs8, spkiDer(mine.publicKey)), true);
    assert.equal(privateKeyMatchesSpki(pkcs8, spkiDer(other.publicKey)), false);
    assert.equal(privateKeyMatchesSpki(exportPkcs8Der(other.privateKey), spkiDer(mine.publicKey)), false);
  });
}

test('a damaged private scalar, a key of another curve and garbage do not match', () => {
  const k = generateKeyPair('ec-p256');
  const spki = spkiDer(k.publicKey);
  const pkcs8 = exportPkcs8Der(k.privateKey);
  // The scalar sits in the OCTET STRING after the ECPrivateKey version; flip a bit in it (not in the embedded
  // public key, which a check that trusted it would still find equal).
  const damaged = Buffer.from(pkcs8);
  const at = damaged.indexOf(Buffer.from([0x02, 0x01, 0x01, 0x04, 0x20])) + 5;
  assert.ok(at > 5);
  damaged[at + 10]! ^= 0x01;
  assert.equal(privateKeyMatchesSpki(damaged, spki), false);
  assert.equal(privateKeyMatchesSpki(exportPkcs8Der(generateKeyPair('ec-p384').privateKey), spki), false);
  assert.equal(privateKeyMatchesSpki(Buffer.from('not a key'), spki), false);
  assert.equal(privateKeyMatchesSpki(pkcs8, Buffer.from('not an spki')), false);
});
