import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { jwkToPublicKey, publicJwk } from '../../../src/common/jwt/jwk.js';
import { MeshidError } from '../../../src/common/errors.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function spki(key: import('node:crypto').KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function invalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof MeshidError && err.code === 'invalid_argument' && pattern.test(err.message);
}

for (const [crv, namedCurve, size] of [['P-256', 'prime256v1', 32], ['P-384', 'secp384r1', 48], ['P-521', 'secp521r1', 66]] as const) {
  test(`EC ${crv} JWK carries kty, kid, crv and full-length x/y, and nothing private even from a private key`, () => {
    const { privateKey } = jobFreeKeyPair('ec', { namedCurve });
    const jwk = publicJwk(privateKey, 'key-1');
    assert.deepEqual(Object.keys(jwk).sort(), ['crv', 'kid', 'kty', 'x', 'y']);
    assert.equal(jwk.kty, 'EC');
    assert.equal(jwk.crv, crv);
    assert.equal(jwk.kid, 'key-1');
    assert.equal(Buffer.from(jwk.x!, 'base64url').length, size);
    assert.equal(Buffer.from(jwk.y!, 'base64url').length, size);
    for (const m of PRIVATE_MEMBERS) assert.equal(m in jwk, false, `member ${m} leaked`);
    assert.deepEqual(spki(jwkToPublicKey(jwk)), spki(createPublicKey(privateKey)));
  });
}

test('RSA JWK carries kty, kid, n and e only', () => {
  const { privateKey } = jobFreeKeyPair('rsa', { modulusLength: 2048 });
  const jwk = publicJwk(privateKey, 'rsa-1');
  assert.deepEqual(Object.keys(jwk).sort(), ['e', 'kid', 'kty', 'n']);
  assert.equal(jwk.kty, 'RSA');
  assert.equal(jwk.e, 'AQAB');
  assert.deepEqual(spki(jwkToPublicKey(jwk)), spki(createPublicKey(privateKey)));
});

test('an empty kid leaves kid out (X.509 bundle entries must not carry one)', () => {
  const { publicKey } = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' });
  assert.equal('kid' in publicJwk(publicKey, ''), false);
});

test('Ed25519 JWK is kty OKP with crv and x only (RFC 8037), read back only where OKP keys are asked for', () => {
  const { privateKey } = jobFreeKeyPair('ed25519');
  const jwk = publicJwk(privateKey, '');
  assert.deepEqual(jwk, { kty: 'OKP', crv: 'Ed25519', x: jwk.x });
  assert.equal(Buffer.from(jwk.x!, 'base64url').length, 32);
  assert.deepEqual(spki(jwkToPublicKey(jwk, 'JWK', { okp: true })), spki(createPublicKey(privateKey)));
  // JWT-SVID §3 allows RS, ES and PS only: where a JWT key is read, an OKP key is still not one.
  assert.throws(() => jwkToPublicKey(jwk), invalid(/unsupported key type "OKP" \(expected "EC" or "RSA"\)/));
});

test('Ed448 keys are neither written nor read as JWKs: go-jose (SPIRE, go-spiffe) refuses a whole JWK Set holding one', () => {
  const { publicKey } = jobFreeKeyPair('ed448');
  assert.throws(() => publicJwk(publicKey, ''), invalid(/unsupported key for a JWK: ed448/));
  const jwk = { kty: 'OKP', crv: 'Ed448', x: publicKey.export({ format: 'jwk' }).x };
  assert.throws(() => jwkToPublicKey(jwk, 'JWK', { okp: true }), invalid(/unsupported OKP curve "Ed448" \(expected Ed25519\)/));
});

test('publicJwk refuses keys no JWK of meshid carries: EC off the NIST curves, DSA, X25519', () => {
  const { publicKey: k1 } = jobFreeKeyPair('ec', { namedCurve: 'secp256k1' });
  assert.throws(() => publicJwk(k1, 'k'), invalid(/unsupported key for a JWK: ec secp256k1/));
  const { publicKey: dsa } = jobFreeKeyPair('dsa', { modulusLength: 2048, divisorLength: 256 });
  assert.throws(() => publicJwk(dsa, 'k'), invalid(/unsupported key for a JWK: dsa/));
  const { publicKey: x25519 } = jobFreeKeyPair('x25519');
  assert.throws(() => publicJwk(x25519, 'k'), invalid(/unsupported key for a JWK: x25519/));
});

test('jwkToPublicKey with OKP keys refuses other curves and an x of the wrong length', () => {
  const { publicKey } = jobFreeKeyPair('ed25519');
  const good = publicJwk(publicKey, '');
  const cases: Array<[string, unknown, RegExp]> = [
    ['X25519 (cannot sign)', { ...good, crv: 'X25519' }, /unsupported OKP curve "X25519" \(expected Ed25519\)/],
    ['Ed448', { ...good, crv: 'Ed448' }, /unsupported OKP curve "Ed448" \(expected Ed25519\)/],
    ['crv not a string', { ...good, crv: 25519 }, /unsupported OKP curve 25519/],
    ['x not base64url', { ...good, x: `${good.x!.slice(1)}+` }, /not valid base64url/],
    ['short x', { ...good, x: Buffer.from(good.x!, 'base64url').subarray(1).toString('base64url') }, /"x" must be 32 bytes for Ed25519/],
    ['missing x', { kty: 'OKP', crv: 'Ed25519' }, /member "x" is missing/],
    ['private member d', { ...good, d: good.x }, /private key members \(d\)/],
  ];
  for (const [name, jwk, pattern] of cases) assert.throws(() => jwkToPublicKey(jwk, 'JWK', { okp: true }), invalid(pattern), name);
});

test('jwkToPublicKey rejects malformed or unsupported JWKs with a reason', () => {
  const { publicKey } = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' });
  const good = publicJwk(publicKey, 'k');
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', 'EC', /not a JSON object/],
    ['symmetric key', { kty: 'oct', k: 'AAAA' }, /private key members \(k\)/],
    ['unknown kty', { kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }, /unsupported key type "OKP"/],
    ['unknown curve', { ...good, crv: 'secp256k1' }, /unsupported EC curve "secp256k1"/],
    ['missing y', { kty: 'EC', crv: 'P-256', x: good.x }, /member "y" is missing/],
    ['short x', { ...good, x: Buffer.from(good.x!, 'base64url').subarray(1).toString('base64url') }, /"x" must be 32 bytes/],
    ['padded x', { ...good, x: `${good.x}=` }, /not valid base64url/],
    ['private member d', { ...good, d: good.x }, /private key members \(d\)/],
    ['point not on the curve', { ...good, y: good.x }, /not a valid EC public key/],
  ];
  for (const [name, jwk, pattern] of cases) assert.throws(() => jwkToPublicKey(jwk), invalid(pattern), name);
});
