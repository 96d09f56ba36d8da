import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createHmac, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { parseJwtSvid, signJwtSvid, validateJwtSvid, type ValidateJwtSvidOptions } from '../../../src/common/jwt/jwt-svid.js';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError } from '../../../src/common/errors.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const ec256 = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' });
const ec384 = jobFreeKeyPair('ec', { namedCurve: 'secp384r1' });
const ec521 = jobFreeKeyPair('ec', { namedCurve: 'secp521r1' });
const rsa = jobFreeKeyPair('rsa', { modulusLength: 2048 });

const SUB = 'spiffe://example.org/ns/web';
const clock = new FakeClock(Date.UTC(2026, 0, 1));
const IAT = Math.floor(clock.now() / 1000);
const EXP = IAT + 300;

/** Bundles by trust domain: kid → key. */
const bundles: Record<string, Record<string, KeyObject>> = {
  'example.org': { ec256: ec256.publicKey, ec384: ec384.publicKey, ec521: ec521.publicKey, rsa: rsa.publicKey },
  'other.org': { foreign: ec256.publicKey },
};

function options(overrides: Partial<ValidateJwtSvidOptions> = {}): ValidateJwtSvidOptions {
  return {
    audience: 'db',
    now: clock.now(),
    findKey: (td, kid) => bundles[td]?.[kid],
    ...overrides,
  };
}

function b64(value: object | Buffer): string {
  return (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString('base64url');
}

/** Builds a token by hand so tests can produce what signJwtSvid never would. */
function craft(header: object, claims: object, signer: (input: string) => Buffer = (input) =>
  sign('sha256', Buffer.from(input), { key: ec256.privateKey, dsaEncoding: 'ieee-p1363' })): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${b64(signer(input))}`;
}

const CLAIMS = { sub: SUB, aud: ['db'], exp: EXP, iat: IAT };
const HEADER = { alg: 'ES256', kid: 'ec256', typ: 'JWT' };

function invalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof MeshidError, `expected MeshidError, got ${String(err)}`);
    assert.equal(err.code, 'invalid_argument');
    assert.match(err.message, pattern);
    return true;
  };
}

for (const [alg, keys, kid, sigBytes] of [
  ['ES256', ec256, 'ec256', 64],
  ['ES384', ec384, 'ec384', 96],
  ['ES512', ec521, 'ec521', 132],
  ['RS256', rsa, 'rsa', 256],
] as const) {
  test(`${alg} JWT-SVID round trip: exact header, claims, ${sigBytes}-byte signature, validates`, () => {
    const token = signJwtSvid({ privateKey: keys.privateKey, kid, sub: SUB, aud: ['db', 'cache'], iat: IAT, exp: EXP });
    const parsed = parseJwtSvid(token);
    assert.deepEqual(parsed.header, { alg, kid, typ: 'JWT' });
    assert.deepEqual(Object.keys(parsed.header), ['alg', 'kid', 'typ']);
    assert.deepEqual(parsed.claims, { sub: SUB, aud: ['db', 'cache'], exp: EXP, iat: IAT });
    assert.equal(parsed.signature.length, sigBytes);
    assert.doesNotMatch(token, /[=+/]/, 'base64url without padding');
    const result = validateJwtSvid(token, options({ audience: 'cache' }));
    assert.equal(result.spiffeId, SUB);
    assert.deepEqual(result.claims, parsed.claims);
  });
}

test('ES256 signature is raw R‖S: 64 bytes that a DER-expecting verifier accepts once re-encoded as DER', () => {
  const token = signJwtSvid({ privateKey: ec256.privateKey, kid: 'ec256', sub: SUB, aud: ['db'], iat: IAT, exp: EXP });
  const { signingInput, signature } = parseJwtSvid(token);
  assert.equal(signature.length, 64);
  // Independent check: build the DER ECDSA-Sig-Value from R and S and verify with Node's default (DER) encoding.
  const int = (b: Buffer): Buffer => {
    let v = b;
    while (v.length > 1 && v[0] === 0 && (v[1]! & 0x80) === 0) v = v.subarray(1);
    if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(signature.subarray(0, 32)), int(signature.subarray(32))]);
  const der = Buffer.concat([Buffer.from([0x30, body.length]), body]);
  assert.equal(verify('sha256', Buffer.from(signingInput), ec256.publicKey, der), true);
});

test('PS256 tokens from other issuers validate (RSA-PSS, salt = hash length)', () => {
  const token = craft({ alg: 'PS256', kid: 'rsa', typ: 'JWT' }, CLAIMS, (input) =>
    sign('sha256', Buffer.from(input), { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }));
  assert.equal(validateJwtSvid(token, options()).spiffeId, SUB);
});

test('PS256 tokens signed with another salt length validate, as go-jose (SPIRE, go-spiffe) verifies them', () => {
  for (const saltLength of [constants.RSA_PSS_SALTLEN_MAX_SIGN, 0, 20]) {
    const token = craft({ alg: 'PS256', kid: 'rsa', typ: 'JWT' }, CLAIMS, (input) =>
      sign('sha256', Buffer.from(input), { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }));
    assert.equal(validateJwtSvid(token, options()).spiffeId, SUB, `salt length ${saltLength}`);
  }
  const forged = craft({ alg: 'PS256', kid: 'rsa', typ: 'JWT' }, CLAIMS, (input) =>
    sign('sha256', Buffer.from(`${input}x`), { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN }));
  assert.throws(() => validateJwtSvid(forged, options()), invalid(/signature is invalid/));
});

test('typ JOSE or no typ is accepted; aud as a single string is accepted', () => {
  assert.equal(validateJwtSvid(craft({ alg: 'ES256', kid: 'ec256', typ: 'JOSE' }, CLAIMS), options()).spiffeId, SUB);
  assert.equal(validateJwtSvid(craft({ alg: 'ES256', kid: 'ec256' }, { ...CLAIMS, aud: 'db' }), options()).spiffeId, SUB);
});

test('a token is accepted within the 60 s leeway and rejected just past it', () => {
  const token = craft(HEADER, CLAIMS);
  assert.equal(validateJwtSvid(token, options({ now: (EXP + 59) * 1000 })).spiffeId, SUB);
  assert.throws(() => validateJwtSvid(token, options({ now: (EXP + 60) * 1000 })), invalid(/^token has expired$/));
  assert.throws(() => validateJwtSvid(token, options({ now: EXP * 1000, leewaySeconds: 0 })), invalid(/^token has expired$/));
});

test('a FakeClock advanced past exp turns a valid token into an expired one', () => {
  const fake = new FakeClock(clock.now());
  const token = signJwtSvid({ privateKey: ec256.privateKey, kid: 'ec256', sub: SUB, aud: ['db'], iat: IAT, exp: IAT + 60 });
  assert.equal(validateJwtSvid(token, options({ now: fake.now() })).spiffeId, SUB);
  fake.advance(121_000);
  assert.throws(() => validateJwtSvid(token, options({ now: fake.now() })), invalid(/^token has expired$/));
});

test('ValidateJWTSVID rejections name the reason', () => {
  const good = craft(HEADER, CLAIMS);
  const [h, p, s] = good.split('.') as [string, string, string];
  const flipped = Buffer.from(s, 'base64url');
  flipped[10] ^= 0x01;
  const hmacToken = craft({ alg: 'HS256', kid: 'ec256', typ: 'JWT' }, CLAIMS, (input) =>
    createHmac('sha256', createPublicKey(ec256.privateKey).export({ type: 'spki', format: 'der' })).update(input).digest());
  const cases: Array<[string, string, RegExp, Partial<ValidateJwtSvidOptions>?]> = [
    ['tampered signature', `${h}.${p}.${b64(flipped)}`, /^token signature is invalid$/],
    ['signature stripped (alg kept)', `${h}.${p}.`, /^token signature is invalid$/],
    ['tampered payload', `${h}.${b64({ ...CLAIMS, sub: 'spiffe://example.org/ns/admin' })}.${s}`, /^token signature is invalid$/],
    ['alg none', `${b64({ alg: 'none', kid: 'ec256' })}.${p}.`, /algorithm "none" is not allowed/],
    ['HS256 keyed with the public key', hmacToken, /algorithm "HS256" is not allowed/],
    ['EdDSA', craft({ alg: 'EdDSA', kid: 'ec256' }, CLAIMS), /algorithm "EdDSA" is not allowed/],
    ['no alg', craft({ kid: 'ec256' }, CLAIMS), /algorithm null is not allowed/],
    ['missing kid', craft({ alg: 'ES256', typ: 'JWT' }, CLAIMS), /missing the key id \(kid\)/],
    ['empty kid', craft({ alg: 'ES256', kid: '' }, CLAIMS), /kid\) must be a non-empty string/],
    ['unknown kid', craft({ ...HEADER, kid: 'nope' }, CLAIMS), /^no key with kid "nope" in the bundle for example\.org$/],
    ['kid only in another trust domain', craft({ ...HEADER, kid: 'foreign' }, CLAIMS), /no key with kid "foreign" in the bundle for example\.org/],
    ['jku header', craft({ ...HEADER, jku: 'https://evil' }, CLAIMS), /header parameter "jku" is not allowed/],
    ['crit header', craft({ ...HEADER, crit: ['exp'] }, CLAIMS), /header parameter "crit" is not allowed/],
    ['typ at+jwt', craft({ ...HEADER, typ: 'at+jwt' }, CLAIMS), /typ "at\+jwt" is not JWT or JOSE/],
    ['alg/key mismatch', craft({ ...HEADER, alg: 'RS256' }, CLAIMS), /RS256 needs an RSA key/],
    ['ES384 claimed for a P-256 key', craft({ ...HEADER, alg: 'ES384' }, CLAIMS), /ES384 needs an EC P-384 key/],
    ['expired', craft(HEADER, CLAIMS), /^token has expired$/, { now: (EXP + 3600) * 1000 }],
    ['no exp', craft(HEADER, { ...CLAIMS, exp: undefined }), /^token has no exp claim$/],
    ['exp as string', craft(HEADER, { ...CLAIMS, exp: String(EXP) }), /exp claim is not a NumericDate/],
    ['future nbf', craft(HEADER, { ...CLAIMS, nbf: IAT + 120 }), /not valid yet \(nbf is in the future\)/],
    ['future iat', craft(HEADER, { ...CLAIMS, iat: IAT + 120 }), /issued in the future/],
    ['wrong audience', craft(HEADER, CLAIMS), /^token audience does not include "x"$/, { audience: 'x' }],
    ['no aud', craft(HEADER, { ...CLAIMS, aud: undefined }), /^token has no aud claim$/],
    ['aud of numbers', craft(HEADER, { ...CLAIMS, aud: [1] }), /aud claim must be a string or an array of strings/],
    ['sub not a SPIFFE ID', craft(HEADER, { ...CLAIMS, sub: 'https://example.org/web' }), /subject is not a valid SPIFFE ID/],
    ['sub with uppercase trust domain', craft(HEADER, { ...CLAIMS, sub: 'spiffe://Example.org/web' }), /subject is not a valid SPIFFE ID/],
    ['sub is the trust domain', craft(HEADER, { ...CLAIMS, sub: 'spiffe://example.org' }), /must have a path/],
    ['no sub', craft(HEADER, { ...CLAIMS, sub: undefined }), /^token has no sub claim$/],
    ['JWE (5 segments)', `${h}.${p}.${s}.x.y`, /expected 3 segments, found 5/],
    ['padding in a segment', `${h}=.${p}.${s}`, /token header is not valid base64url/],
    ['payload not JSON', `${h}.${b64(Buffer.from('not json'))}.${s}`, /payload is not valid JSON/],
    ['payload a JSON array', `${h}.${b64(Buffer.from('[1]'))}.${s}`, /payload is not a JSON object/],
    ['empty token', '', /^token is empty$/],
    ['empty audience requested', good, /^audience must be specified$/, { audience: '' }],
  ];
  for (const [name, token, pattern, extra] of cases) {
    assert.throws(() => validateJwtSvid(token, options(extra)), invalid(pattern), name);
  }
});

test('the signature is checked before the claims: a forged expired token reports the signature', () => {
  const forged = craft(HEADER, { ...CLAIMS, exp: IAT - 3600 }, () => Buffer.alloc(64, 1));
  assert.throws(() => validateJwtSvid(forged, options()), invalid(/^token signature is invalid$/));
});

test('the key is looked up only in the bundle of the sub trust domain', () => {
  const asked: string[] = [];
  const token = craft({ ...HEADER, kid: 'foreign' }, { ...CLAIMS, sub: 'spiffe://other.org/svc' });
  const result = validateJwtSvid(token, options({ findKey: (td, kid) => (asked.push(td), bundles[td]?.[kid]) }));
  assert.equal(result.spiffeId, 'spiffe://other.org/svc');
  assert.deepEqual(asked, ['other.org']);
});

test('signJwtSvid refuses what a validator would reject', () => {
  const base = { privateKey: ec256.privateKey, kid: 'ec256', sub: SUB, aud: ['db'], iat: IAT, exp: EXP };
  const small = jobFreeKeyPair('rsa', { modulusLength: 1024 });
  const cases: Array<[string, object, RegExp]> = [
    ['root sub', { sub: 'spiffe://example.org' }, /must have a path/],
    ['bad sub', { sub: 'spiffe://example.org/a//b' }, /not a valid SPIFFE ID/],
    ['no audience', { aud: [] }, /^audience must be specified$/],
    ['empty audience value', { aud: [''] }, /non-empty strings/],
    ['empty kid', { kid: '' }, /needs a kid/],
    ['exp before iat', { exp: IAT }, /exp must be after iat/],
    ['fractional times', { iat: IAT + 0.5 }, /integer seconds/],
    ['public key', { privateKey: ec256.publicKey }, /private key/],
    ['1024-bit RSA', { privateKey: small.privateKey }, /1024-bit RSA key/],
    ['Ed25519', { privateKey: jobFreeKeyPair('ed25519').privateKey }, /unsupported JWT signing key/],
  ];
  for (const [name, override, pattern] of cases) {
    assert.throws(() => signJwtSvid({ ...base, ...override }), invalid(pattern), name);
  }
});

test('nbf and iat are allowed the same 60 s of clock skew as exp: a token from a server a little ahead validates', () => {
  for (const claim of ['nbf', 'iat'] as const) {
    const ahead = craft(HEADER, { ...CLAIMS, [claim]: IAT + 60 });
    assert.equal(validateJwtSvid(ahead, options()).spiffeId, SUB, `${claim} 60 s ahead`);
    assert.throws(() => validateJwtSvid(craft(HEADER, { ...CLAIMS, [claim]: IAT + 61 }), options()), invalid(/future/), `${claim} 61 s ahead`);
  }
});
