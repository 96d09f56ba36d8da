import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { jwkToPublicKey, publicJwk } from '../../../src/common/jwt/jwk.js';
import { MeshidError } from '../../../src/common/errors.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function spki(key: import('node:crypto').KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function invalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof MeshidError && err.code === 'invalid_argument' && pattern.test(err.message);
}

for (const [crv, namedCurve, size] of [['P-256', 'prime256v1', 32], ['P-384', 'secp384r1', 48], ['P-521', 'secp521r1', 66]] as const) {
  test(`EC ${crv} JWK carries kty, kid, crv and full-length x/y, and nothing private even from a private key`, () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve });
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
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicJwk(privateKey, 'rsa-1');
  assert.deepEqual(Object.keys(jwk).sort(), ['e', 'kid', 'kty', 'n']);
  assert.equal(jwk.kty, 'RSA');
  assert.equal(jwk.e, 'AQAB');
  assert.deepEqual(spki(jwkToPublicKey(jwk)), spki(createPublicKey(privateKey)));
});

test('an empty kid leaves kid out (X.509 bundle entries must not carry one)', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  assert.equal('kid' in publicJwk(publicKey, ''), false);
});

test('publicJwk refuses key types a JWT-SVID bundle cannot carry', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  assert.throws(() => publicJwk(publicKey, 'k'), invalid(/unsupported key/));
  const { publicKey: k1 } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  assert.throws(() => publicJwk(k1, 'k'), invalid(/unsupported key/));
});

test('jwkToPublicKey rejects malformed or unsupported JWKs with a reason', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
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
