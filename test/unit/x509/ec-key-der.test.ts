import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { ecKeyDer } from '../../../src/common/x509/ec-key-der.js';

/**
 * ecKeyDer assembles the PKCS#8 an agent serves as x509_svid_key and the SPKI its CSR names from a JWK export, instead
 * of OpenSSL's encoders: its bytes must be OpenSSL's own, key for key, on every curve meshid uses.
 */

const CURVES = [['P-256', 'prime256v1', 32], ['P-384', 'secp384r1', 48], ['P-521', 'secp521r1', 66]] as const;

test('an EC key\'s PKCS#8 and SPKI are byte for byte what OpenSSL exports, on P-256, P-384 and P-521', () => {
  for (const [, namedCurve] of CURVES) {
    for (let i = 0; i < 100; i++) {
      // Encoded inside the generation job, then imported: the keys.ts note on generateKeyPairSync's KeyObjects.
      const pair = generateKeyPairSync('ec', { namedCurve, privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } });
      const der = ecKeyDer(createPrivateKey({ key: pair.privateKey, format: 'der', type: 'pkcs8' }));
      assert.ok(der !== undefined, namedCurve);
      assert.ok(der.pkcs8.equals(pair.privateKey), `${namedCurve} PKCS#8 #${i}`);
      assert.ok(der.spki.equals(pair.publicKey), `${namedCurve} SPKI #${i}`);
    }
  }
});

test('a scalar and coordinates with leading zero bytes keep the curve\'s full size, as OpenSSL writes them', () => {
  for (const [crv, openssl, size] of CURVES) {
    const ecdh = createECDH(openssl);
    // A scalar of two leading zero bytes: a valid key, and one a minimal INTEGER-style encoding would shorten.
    const scalar = Buffer.concat([Buffer.alloc(2), Buffer.alloc(size - 2, 0x5a)]);
    ecdh.setPrivateKey(scalar);
    const point = ecdh.getPublicKey();
    const key = createPrivateKey({
      key: { kty: 'EC', crv, d: scalar.toString('base64url'), x: point.subarray(1, 1 + size).toString('base64url'), y: point.subarray(1 + size).toString('base64url') },
      format: 'jwk',
    });
    const der = ecKeyDer(key)!;
    assert.ok(der.pkcs8.equals(key.export({ type: 'pkcs8', format: 'der' })), crv);
    assert.ok(der.spki.equals(createPublicKey(key).export({ type: 'spki', format: 'der' })), crv);
    assert.ok(der.pkcs8.includes(scalar), `${crv}: the scalar at full size`);
  }
});

test('an RSA key or a public key is not encoded here: undefined, for the caller to export', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } });
  assert.equal(ecKeyDer(createPrivateKey({ key: rsa.privateKey, format: 'der', type: 'pkcs8' })), undefined);
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1', privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } });
  assert.equal(ecKeyDer(createPublicKey({ key: ec.publicKey, format: 'der', type: 'spki' })), undefined);
});
