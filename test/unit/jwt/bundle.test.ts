// Tests for src/common/spiffe/bundle.ts (kept next to the JWK tests it builds on).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { X509Certificate, type KeyObject } from 'node:crypto';
import {
  bundleFromSpiffeJson,
  bundleToSpiffeJson,
  federatedBundleFromSpiffeJson,
  jwtBundleJwks,
  x509BundleDer,
  type TrustBundle,
} from '../../../src/common/spiffe/bundle.js';
import { signJwtSvid, validateJwtSvid } from '../../../src/common/jwt/jwt-svid.js';
import { MeshidError } from '../../../src/common/errors.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-bundle-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A real self-signed CA certificate from OpenSSL, DER. */
function makeRoot(name: string, keyArgs: string[]): Buffer {
  const out = path.join(tmp, `${name}.der`);
  execFileSync('openssl', [
    'req', '-x509', '-new', ...keyArgs, '-nodes', '-keyout', path.join(tmp, `${name}.key`), '-out', out, '-outform', 'DER',
    '-subj', `/O=meshid test/CN=${name}`, '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  return fs.readFileSync(out);
}

const ecRoot = makeRoot('ec-root', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
const rsaRoot = makeRoot('rsa-root', ['-newkey', 'rsa:2048']);
const otherRoot = makeRoot('other-root', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']);
const jwtA = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' });
const jwtB = jobFreeKeyPair('rsa', { modulusLength: 2048 });

const bundle: TrustBundle = {
  trustDomain: 'example.org',
  x509Authorities: [ecRoot, rsaRoot],
  jwtAuthorities: [
    { kid: 'kid-a', publicKey: jwtA.publicKey },
    { kid: 'kid-b', publicKey: jwtB.publicKey },
  ],
  sequence: 7,
  refreshHintSeconds: 300,
};

const spki = (k: KeyObject): Buffer => k.export({ type: 'spki', format: 'der' });
type JsonKey = Record<string, unknown>;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function invalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof MeshidError, `expected MeshidError, got ${String(err)}`);
    assert.equal(err.code, 'invalid_argument');
    assert.match(err.message, pattern);
    return true;
  };
}

test('SPIFFE bundle JSON: x509-svid keys carry exactly one standard-base64 x5c and no kid; jwt-svid keys carry a kid', () => {
  const doc = JSON.parse(bundleToSpiffeJson(bundle)) as { keys: JsonKey[]; spiffe_sequence: number; spiffe_refresh_hint: number };
  assert.equal(doc.spiffe_sequence, 7);
  assert.equal(doc.spiffe_refresh_hint, 300);
  const x509 = doc.keys.filter((k) => k['use'] === 'x509-svid');
  const jwt = doc.keys.filter((k) => k['use'] === 'jwt-svid');
  assert.equal(x509.length, 2);
  assert.equal(jwt.length, 2);
  assert.equal(doc.keys.length, 4);
  for (const [i, k] of x509.entries()) {
    assert.equal('kid' in k, false);
    assert.ok(Array.isArray(k['x5c']) && k['x5c'].length === 1);
    const x5c = (k['x5c'] as string[])[0]!;
    assert.match(x5c, /^[A-Za-z0-9+/]+=*$/);
    assert.deepEqual(Buffer.from(x5c, 'base64'), [ecRoot, rsaRoot][i]);
  }
  assert.deepEqual(x509.map((k) => k['kty']), ['EC', 'RSA']);
  assert.deepEqual(jwt.map((k) => k['kid']), ['kid-a', 'kid-b']);
  for (const k of doc.keys) for (const m of PRIVATE_MEMBERS) assert.equal(m in k, false);
});

test('SPIFFE bundle JSON round trip keeps roots, JWT keys, sequence and refresh hint', () => {
  const back = bundleFromSpiffeJson('spiffe://example.org', bundleToSpiffeJson(bundle, { indent: 2 }));
  assert.equal(back.trustDomain, 'example.org');
  assert.deepEqual(back.x509Authorities, bundle.x509Authorities);
  assert.deepEqual(back.jwtAuthorities.map((k) => k.kid), ['kid-a', 'kid-b']);
  assert.deepEqual(back.jwtAuthorities.map((k) => spki(k.publicKey)), [spki(jwtA.publicKey), spki(jwtB.publicKey)]);
  assert.equal(back.sequence, 7);
  assert.equal(back.refreshHintSeconds, 300);
  const noHint = bundleFromSpiffeJson('example.org', bundleToSpiffeJson({ ...bundle, refreshHintSeconds: undefined }));
  assert.equal('refreshHintSeconds' in noHint, false);
});

test('a token signed with a bundle JWT key validates against the bundle read back from JSON', () => {
  const parsed = bundleFromSpiffeJson('example.org', bundleToSpiffeJson(bundle));
  const token = signJwtSvid({ privateKey: jwtB.privateKey, kid: 'kid-b', sub: 'spiffe://example.org/api', aud: ['x'], iat: 1000, exp: 1300 });
  const result = validateJwtSvid(token, {
    audience: 'x',
    now: 1_100_000,
    findKey: (td, kid) => (td === parsed.trustDomain ? parsed.jwtAuthorities.find((k) => k.kid === kid)?.publicKey : undefined),
  });
  assert.equal(result.spiffeId, 'spiffe://example.org/api');
});

function withKeys(mutate: (keys: JsonKey[]) => void, top: Record<string, unknown> = {}): string {
  const doc = JSON.parse(bundleToSpiffeJson(bundle)) as { keys: JsonKey[] };
  mutate(doc.keys);
  return JSON.stringify({ ...doc, ...top });
}

test('bundleFromSpiffeJson enforces the go-spiffe constraints with a clear reason', () => {
  const ecB64 = ecRoot.toString('base64');
  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{', /is not valid JSON/],
    ['not an object', '[]', /is not a JSON object/],
    ['no keys', '{"spiffe_sequence":1}', /has no "keys" array/],
    ['two x5c', withKeys((k) => { k[0]!['x5c'] = [ecB64, rsaRoot.toString('base64')]; }), /keys\[0\]: an x509-svid key must have exactly one x5c/],
    ['no x5c', withKeys((k) => { delete k[0]!['x5c']; }), /keys\[0\]: an x509-svid key must have exactly one x5c/],
    ['x5c base64url', withKeys((k) => { k[0]!['x5c'] = [ecRoot.toString('base64url')]; }), /x5c\[0\] is not standard base64/],
    ['x5c not a certificate', withKeys((k) => { k[0]!['x5c'] = ['AAAA']; }), /x5c\[0\] is not a DER X\.509 certificate/],
    ['kid on an x509-svid key', withKeys((k) => { k[0]!['kid'] = 'x'; }), /x509-svid key must not have a kid/],
    ['key members disagree with x5c', withKeys((k) => { k[0]!['x5c'] = [otherRoot.toString('base64')]; }), /unsupported EC curve|do not match the x5c/],
    ['members of another P-256 key', withKeys((k) => { Object.assign(k[0]!, { ...k[2]!, use: 'x509-svid', kid: undefined }); delete k[0]!['kid']; }), /do not match the x5c/],
    ['jwt-svid key without kid', withKeys((k) => { delete k[2]!['kid']; }), /keys\[2\]: a jwt-svid key must have a non-empty kid/],
    ['duplicate kid', withKeys((k) => { k[3]!['kid'] = 'kid-a'; }), /keys\[3\]: duplicate kid "kid-a"/],
    ['private member', withKeys((k) => { k[2]!['d'] = k[2]!['x']; }), /keys\[2\] carries private key members \(d\)/],
    ['no kty', withKeys((k) => { delete k[1]!['kty']; }), /keys\[1\] has no kty/],
    ['sequence as string', withKeys(() => {}, { spiffe_sequence: '7' }), /spiffe_sequence must be a non-negative integer/],
    ['negative refresh hint', withKeys(() => {}, { spiffe_refresh_hint: -1 }), /spiffe_refresh_hint must be a non-negative integer/],
  ];
  for (const [name, json, pattern] of cases) assert.throws(() => bundleFromSpiffeJson('example.org', json), invalid(pattern), name);
  assert.throws(() => bundleFromSpiffeJson('Example.org', bundleToSpiffeJson(bundle)), invalid(/trust domain/));
});

test('keys of missing or unknown use or of unknown kty are ignored; repeated roots kept once; missing sequence reads as 0', () => {
  const json = withKeys((k) => {
    k.push({ kty: 'EC', use: 'wit-svid', kid: 'w', crv: 'P-256', x: 'x', y: 'y' });
    k.push({ kty: 'EC', kid: 'no-use', crv: 'P-256', x: 'x', y: 'y' });
    k.push({ kty: 'EC', use: '', kid: 'empty-use', crv: 'P-256', x: 'x', y: 'y' });
    k.push({ kty: 'OKP', use: 'jwt-svid', kid: 'ed', crv: 'Ed25519', x: 'AAAA' });
    k.push({ ...k[0]! });
  }, { spiffe_sequence: undefined, spiffe_refresh_hint: undefined });
  const b = bundleFromSpiffeJson('example.org', json);
  assert.equal(b.x509Authorities.length, 2);
  assert.deepEqual(b.jwtAuthorities.map((k) => k.kid), ['kid-a', 'kid-b']);
  assert.equal(b.sequence, 0);
  assert.equal(bundleFromSpiffeJson('example.org', '{"keys":[]}').x509Authorities.length, 0);
});

test("a partner's bundle: keys a consumer must ignore are left out and reported, the others read (X509-SVID §6.2)", () => {
  const rsaB64 = rsaRoot.toString('base64');
  const json = withKeys((k) => {
    // keys[0] (ecRoot) and keys[2] (kid-a) stay as they are: usable.
    k[1]!['x5c'] = [rsaB64, ecRoot.toString('base64'), 'not even base64']; // the first value counts, the rest ignored
    k[3]!['crv'] = 'P-192'; // kid-b, made an EC key on a curve nobody supports
    k[3]!['kty'] = 'EC';
    k.push({ ...k[0]!, x5c: undefined }); // 4: x509-svid without x5c
    k.push({ ...k[0]!, x5c: [] }); // 5: with an empty x5c
    k.push({ use: 'jwt-svid', kid: 'no-kty', crv: 'P-256', x: 'AAAA', y: 'AAAA' }); // 6: no kty
    k.push({ ...(JSON.parse(bundleToSpiffeJson({ ...bundle, x509Authorities: [otherRoot], jwtAuthorities: [] })) as { keys: JsonKey[] }).keys[0]!, kid: 'k' }); // 7: kid on x509-svid
    k.push(['not', 'an', 'object'] as unknown as JsonKey); // 8
    k.push({ ...k[2]! }); // 9: kid-a again
  });
  const { bundle: read, ignored } = federatedBundleFromSpiffeJson('example.org', json);
  assert.deepEqual(read.x509Authorities, [ecRoot, rsaRoot, otherRoot]);
  assert.deepEqual(read.jwtAuthorities.map((k) => k.kid), ['kid-a']);
  assert.deepEqual(ignored.map((line) => line.replace('SPIFFE bundle for example.org: ', '')), [
    'keys[1]: an x509-svid key must have exactly one x5c certificate; the first is used, 2 more ignored',
    'keys[3]: unsupported EC curve "P-192" (expected P-256, P-384 or P-521); the key is ignored',
    'keys[4]: an x509-svid key must have exactly one x5c certificate; the key is ignored',
    'keys[5]: an x509-svid key must have exactly one x5c certificate; the key is ignored',
    'keys[6] has no kty; the key is ignored',
    'keys[7]: an x509-svid key must not have a kid; the kid is ignored',
    'keys[8] is not a JSON object; the key is ignored',
    'keys[9]: duplicate kid "kid-a"; the key is ignored',
  ]);
  // The same document is refused as meshid's own, where every flaw is an error.
  assert.throws(() => bundleFromSpiffeJson('example.org', json), invalid(/keys\[1\]: an x509-svid key must have exactly one x5c/));
  // Nothing usable left is an empty bundle, not an error: Bundle §4.1.3 reads it as every key revoked.
  const none = federatedBundleFromSpiffeJson('example.org', withKeys((k) => k.forEach((key) => delete key['kty'])));
  assert.deepEqual([none.bundle.x509Authorities, none.bundle.jwtAuthorities, none.ignored.length], [[], [], 4]);
  // A document that is not a bundle at all is still refused.
  for (const [doc, pattern] of [['{', /not valid JSON/], ['{"spiffe_sequence":1}', /no "keys" array/], ['{"keys":[],"spiffe_sequence":-1}', /spiffe_sequence must be/]] as const) {
    assert.throws(() => federatedBundleFromSpiffeJson('example.org', doc), invalid(pattern), doc);
  }
});

const ed25519Root = makeRoot('ed25519-root', ['-newkey', 'ed25519']);
const ed448Root = makeRoot('ed448-root', ['-newkey', 'ed448']);

test('Ed25519 roots are x509-svid keys of kty OKP (RFC 8037) with their certificate, read back by both readers', () => {
  const okp: TrustBundle = { ...bundle, x509Authorities: [ed25519Root, ecRoot] };
  const json = bundleToSpiffeJson(okp);
  const keys = (JSON.parse(json) as { keys: JsonKey[] }).keys;
  const expected = (der: Buffer, crv: string): JsonKey => ({
    kty: 'OKP', crv, x: new X509Certificate(der).publicKey.export({ format: 'jwk' }).x, use: 'x509-svid', x5c: [der.toString('base64')],
  });
  assert.deepEqual(keys[0], expected(ed25519Root, 'Ed25519'));
  assert.deepEqual(bundleFromSpiffeJson('example.org', json).x509Authorities, okp.x509Authorities);
  const partner = federatedBundleFromSpiffeJson('example.org', json);
  assert.deepEqual([partner.bundle.x509Authorities, partner.ignored], [okp.x509Authorities, []]);
  // As for EC and RSA keys (go-jose does the same), the key members must be the certificate's key.
  const swapped = withKeys((k) => { k[0] = { ...keys[0]!, x5c: [ed448Root.toString('base64')] }; });
  assert.throws(() => bundleFromSpiffeJson('example.org', swapped), invalid(/keys\[0\]: the key members do not match the x5c certificate's public key/));
  const otherEd = makeRoot('ed25519-other', ['-newkey', 'ed25519']);
  const mismatch = withKeys((k) => { k[0] = { ...keys[0]!, x5c: [otherEd.toString('base64')] }; });
  assert.throws(() => bundleFromSpiffeJson('example.org', mismatch), invalid(/keys\[0\]: the key members do not match the x5c certificate's public key/));
  assert.deepEqual(federatedBundleFromSpiffeJson('example.org', mismatch).ignored.map((l) => l.replace('SPIFFE bundle for example.org: ', '')), [
    "keys[0]: the key members do not match the x5c certificate's public key; the key is ignored",
  ]);
  assert.equal(federatedBundleFromSpiffeJson('example.org', mismatch).unreadableTypes, 0, 'a flaw, not a key type meshid does not read');
});

test('an Ed448 root is never written into a SPIFFE bundle document (go-jose refuses the whole set); a partner\'s is ignored and reported', () => {
  // go-jose's JSONWebKey.UnmarshalJSON accepts OKP on Ed25519 only, and go-spiffe's spiffebundle.Parse fails on any key.
  assert.throws(() => bundleToSpiffeJson({ ...bundle, x509Authorities: [ecRoot, ed448Root] }), invalid(/unsupported key for a JWK: ed448/));
  const ed448 = { kty: 'OKP', use: 'x509-svid', crv: 'Ed448', x: new X509Certificate(ed448Root).publicKey.export({ format: 'jwk' }).x, x5c: [ed448Root.toString('base64')] };
  const json = withKeys((k) => { k.splice(0, k.length, ed448, ...k.filter((key) => key['use'] === 'x509-svid')); });
  const partner = federatedBundleFromSpiffeJson('example.org', json);
  assert.deepEqual(partner.bundle.x509Authorities, bundle.x509Authorities, 'the other roots are read');
  assert.equal(partner.unreadableTypes, 1);
  assert.match(partner.ignored[0]!, /keys\[0\]: an x509-svid key of type "OKP" on curve "Ed448", which meshid cannot use \(it reads OKP keys on Ed25519 only: SPIRE and go-spiffe refuse/);
});

test("a partner's keys of a type meshid cannot use for their use are reported, and counted apart from flawed keys", () => {
  const ed = (JSON.parse(bundleToSpiffeJson({ ...bundle, x509Authorities: [ed25519Root], jwtAuthorities: [] })) as { keys: JsonKey[] }).keys[0]!;
  const json = JSON.stringify({
    keys: [
      { kty: 'OKP', use: 'jwt-svid', kid: 'ed', crv: 'Ed25519', x: ed['x'] },
      { kty: 'AKP', use: 'x509-svid', alg: 'ML-DSA-65', pub: 'AAAA', x5c: ed['x5c'] },
      { kty: 'AKP', use: 'wit-svid', kid: 'w', pub: 'AAAA' },
    ],
    spiffe_sequence: 3,
  });
  const { bundle: read, ignored, unreadableTypes } = federatedBundleFromSpiffeJson('example.org', json);
  assert.deepEqual([read.x509Authorities, read.jwtAuthorities], [[], []]);
  // Reported, so the operator hears why nothing is trusted; counted as keys of types meshid does not read (ignored as
  // Bundle §4.2.1 asks), so the poller applies the document as the revocation it is rather than a publishing bug.
  assert.equal(unreadableTypes, 2);
  assert.deepEqual(ignored.map((l) => l.replace('SPIFFE bundle for example.org: ', '')), [
    'keys[0]: a jwt-svid key of type "OKP", which meshid cannot use (it reads jwt-svid keys of type EC or RSA: JWT-SVID §3 allows RS, ES and PS algorithms only, no EdDSA); the key is ignored',
    'keys[1]: an x509-svid key of type "AKP", which meshid cannot use (it reads x509-svid keys of type EC, RSA or OKP); the key is ignored',
  ]);
  // meshid's own documents hold no such keys; one that did would have them ignored, as Bundle §4.2.1 asks.
  assert.deepEqual(bundleFromSpiffeJson('example.org', json).x509Authorities, []);
});

test("a partner's spiffe_sequence and refresh hint may be any JSON integer (Bundle §4.1.1: 64 bits); meshid's own stay safe integers", () => {
  const doc = (sequence: string, hint: string): string =>
    bundleToSpiffeJson(bundle).replace('"spiffe_sequence":7', `"spiffe_sequence":${sequence}`).replace('"spiffe_refresh_hint":300', `"spiffe_refresh_hint":${hint}`);
  const max64 = doc('18446744073709551615', '100000000000000000000');
  const read = federatedBundleFromSpiffeJson('example.org', max64).bundle;
  assert.equal(read.sequence, Number.MAX_SAFE_INTEGER, 'clamped: meshid never uses a partner\'s sequence');
  assert.equal(read.refreshHintSeconds, Number.MAX_SAFE_INTEGER, 'clamped; the poller bounds it to an hour');
  assert.equal(read.x509Authorities.length, 2);
  assert.equal(federatedBundleFromSpiffeJson('example.org', doc('1e400', '9007199254740993')).bundle.sequence, Number.MAX_SAFE_INTEGER);
  assert.equal(federatedBundleFromSpiffeJson('example.org', doc('9007199254740991', '300')).bundle.sequence, Number.MAX_SAFE_INTEGER);
  // Fractions and negatives are no integers, however large.
  assert.throws(() => federatedBundleFromSpiffeJson('example.org', doc('1.5', '300')), invalid(/spiffe_sequence must be a non-negative integer/));
  assert.throws(() => federatedBundleFromSpiffeJson('example.org', doc('-18446744073709551615', '300')), invalid(/spiffe_sequence must be/));
  // meshid's own documents are written with safe integers and read back that way.
  assert.throws(() => bundleFromSpiffeJson('example.org', max64), invalid(/spiffe_sequence must be a non-negative integer/));
  assert.throws(() => bundleToSpiffeJson({ ...bundle, sequence: 2 ** 64 }), invalid(/spiffe_sequence must be a non-negative integer/));
});

test('Workload API JWT bundle is a plain JWK Set of jwt-svid keys, each with a kid', () => {
  const doc = JSON.parse(jwtBundleJwks(bundle)) as Record<string, unknown> & { keys: JsonKey[] };
  assert.deepEqual(Object.keys(doc), ['keys']);
  assert.deepEqual(doc.keys.map((k) => k['kid']), ['kid-a', 'kid-b']);
  assert.deepEqual(doc.keys.map((k) => Object.keys(k).sort()), [['crv', 'kid', 'kty', 'x', 'y'], ['e', 'kid', 'kty', 'n']]);
  assert.throws(() => jwtBundleJwks({ ...bundle, jwtAuthorities: [{ kid: '', publicKey: jwtA.publicKey }] }), invalid(/without a kid/));
  assert.throws(
    () => jwtBundleJwks({ ...bundle, jwtAuthorities: [{ kid: 'a', publicKey: jwtA.publicKey }, { kid: 'a', publicKey: jwtB.publicKey }] }),
    invalid(/two JWT authorities with kid "a"/),
  );
});

test('Workload API X.509 bundle is the roots DER concatenated, parseable cert by cert', () => {
  const der = x509BundleDer(bundle);
  assert.deepEqual(der, Buffer.concat([ecRoot, rsaRoot]));
  const first = new X509Certificate(der.subarray(0, ecRoot.length));
  assert.equal(first.subject.includes('CN=ec-root'), true);
  assert.equal(first.checkIssued(first), true);
});
