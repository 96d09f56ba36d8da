import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { isMeshidError } from '../../../src/common/errors.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { createIntermediateCertificate, createRootCertificate } from '../../../src/common/x509/ca-certificates.js';
import { signatureAlgorithmFor } from '../../../src/common/x509/algorithms.js';
import { generateKeyPair, spkiDer, type KeyType } from '../../../src/common/x509/keys.js';
import { LeafSigner, type LeafRequest } from '../../../src/common/x509/leaf-signer.js';
import { opensslAsn1parse, opensslText, opensslVerify } from '../../support/openssl.js';
import { DAY, makePki, makeRoot, T0, TD } from './pki-fixture.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const ID = `spiffe://${TD}/ns/default/sa/web`;
const ISSUER_TYPES: KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];

const failsWith = (code: 'invalid_argument' | 'failed_precondition', pattern: RegExp) => (err: unknown) =>
  isMeshidError(err, code) && pattern.test(err.message);

function extensionText(text: string, name: string): string {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.trim().startsWith(`${name}:`));
  assert.notEqual(i, -1, `extension ${name} missing:\n${text}`);
  return `${lines[i]!.trim()} | ${lines[i + 1]!.trim()}`;
}

for (const issuerType of ISSUER_TYPES) {
  test(`${issuerType} issuer: leaves verify with openssl -x509_strict as generic, TLS client and TLS server certificates`, async () => {
    const { root, east } = await makePki(issuerType);
    const signer = new LeafSigner(east.der, east.privateKey);
    for (const leafType of ['ec-p256', 'rsa-2048'] as KeyType[]) {
      const leaf = signer.sign({ publicKey: generateKeyPair(leafType).publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY });
      for (const purpose of [undefined, 'sslclient', 'sslserver'] as const) {
        const r = opensslVerify({ roots: [root.der], intermediates: [east.der], leaf, atTime: T0 + 1000, ...(purpose ? { purpose } : {}) });
        assert.ok(r.ok, `${leafType} leaf, purpose ${purpose ?? 'none'}: ${r.output}`);
      }
    }
  });

  test(`${issuerType} issuer: the leaf carries exactly the SPEC-NOTES §3 profile`, async () => {
    const { east } = await makePki(issuerType);
    const signer = new LeafSigner(east.der, east.privateKey);
    const leafKey = generateKeyPair('ec-p256').publicKey;
    const notBefore = T0 - 10_000;
    const notAfter = T0 + DAY;
    const der = signer.sign({ publicKey: leafKey, spiffeId: ID, dnsNames: ['web.default.svc', '*.web.local'], notBefore, notAfter });

    // node:crypto's (OpenSSL's) view.
    const x = new X509Certificate(der);
    const issuer = new X509Certificate(east.der);
    assert.equal(x.subjectAltName, `URI:${ID}, DNS:web.default.svc, DNS:*.web.local`);
    assert.equal(x.ca, false);
    assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']); // node names the EKU list keyUsage
    assert.equal(x.subject, 'O=meshid\nCN=web.default.svc');
    assert.equal(x.issuer, issuer.subject);
    assert.equal(new Date(x.validFrom).getTime(), notBefore);
    assert.equal(new Date(x.validTo).getTime(), notAfter);
    assert.ok(x.checkIssued(issuer));
    assert.ok(x.verify(issuer.publicKey));
    assert.ok(x.publicKey.equals(leafKey));
    const serial = Buffer.from(x.serialNumber, 'hex');
    assert.ok(serial.length <= 20 && serial[0]! < 0x80 && serial[0]! !== 0, `serial ${x.serialNumber}`);

    // openssl's text view: criticality and exact bits.
    const text = opensslText(der);
    assert.match(text, /Version: 3 \(0x2\)/);
    assert.equal(extensionText(text, 'X509v3 Basic Constraints'), 'X509v3 Basic Constraints: critical | CA:FALSE');
    assert.equal(extensionText(text, 'X509v3 Key Usage'), 'X509v3 Key Usage: critical | Digital Signature');
    assert.equal(
      extensionText(text, 'X509v3 Extended Key Usage'),
      'X509v3 Extended Key Usage: | TLS Web Server Authentication, TLS Web Client Authentication',
    );
    assert.equal(
      extensionText(text, 'X509v3 Subject Alternative Name'),
      `X509v3 Subject Alternative Name: | URI:${ID}, DNS:web.default.svc, DNS:*.web.local`,
    );
    const issuerSki = extensionText(opensslText(east.der), 'X509v3 Subject Key Identifier').split(' | ')[1];
    assert.equal(extensionText(text, 'X509v3 Authority Key Identifier').split(' | ')[1]!.replace(/^keyid:/, ''), issuerSki);
    assert.match(extensionText(text, 'X509v3 Subject Key Identifier'), /^X509v3 Subject Key Identifier: \| [0-9A-F:]{59}$/);

    // meshid's own parser agrees.
    const p = parseCertificate(der);
    assert.deepEqual(p.uriSans, [ID]);
    assert.deepEqual(p.dnsNames, ['web.default.svc', '*.web.local']);
    assert.deepEqual(p.keyUsage, ['digitalSignature']);
    assert.equal(p.authorityKeyId, parseCertificate(east.der).subjectKeyId);
    assert.equal(p.isCa, false);
  });
}

test('RSA leaf keys also get keyEncipherment; EC leaf keys do not', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const rsa = signer.sign({ publicKey: generateKeyPair('rsa-2048').publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY });
  const ec = signer.sign({ publicKey: generateKeyPair('ec-p384').publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY });
  assert.equal(extensionText(opensslText(rsa), 'X509v3 Key Usage'), 'X509v3 Key Usage: critical | Digital Signature, Key Encipherment');
  assert.equal(extensionText(opensslText(ec), 'X509v3 Key Usage'), 'X509v3 Key Usage: critical | Digital Signature');
});

test('a public key given as SPKI DER or as a private KeyObject is certified the same as a public KeyObject', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  for (const input of [spkiDer(publicKey), privateKey, publicKey]) {
    const der = signer.sign({ publicKey: input, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY });
    assert.ok(new X509Certificate(der).publicKey.equals(publicKey));
    assert.deepEqual(parseCertificate(der).structure.spki, publicKey.export({ type: 'spki', format: 'der' }));
  }
});

test('serials of many leaves are distinct, positive and at most 20 octets', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const key = generateKeyPair('ec-p256').publicKey;
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const s = parseCertificate(signer.sign({ publicKey: key, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY })).serialHex;
    assert.ok(s.length <= 40 && Number.parseInt(s.slice(0, 2), 16) < 0x80 && !s.startsWith('00'), s);
    seen.add(s);
  }
  assert.equal(seen.size, 2000);
});

test('notAfter in 2050 is encoded as GeneralizedTime and 2049 as UTCTime, and both verify', async () => {
  const root = await makeRoot('ec-p256', Date.UTC(2052, 0, 1));
  const keys = generateKeyPair('ec-p256');
  const interDer = await createIntermediateCertificate({
    trustDomain: TD,
    datacenter: 'dc-east',
    publicKey: keys.publicKey,
    issuerCertDer: root.der,
    issuerPrivateKey: root.privateKey,
    notBefore: T0,
    notAfter: Date.UTC(2051, 0, 1),
  });
  const signer = new LeafSigner(interDer, keys.privateKey);
  const leafKey = generateKeyPair('ec-p256').publicKey;
  const in2050 = signer.sign({ publicKey: leafKey, spiffeId: ID, notBefore: T0, notAfter: Date.UTC(2050, 0, 1) });
  const in2049 = signer.sign({ publicKey: leafKey, spiffeId: ID, notBefore: T0, notAfter: Date.UTC(2049, 11, 31, 23, 59, 59) });
  assert.match(opensslAsn1parse(in2050), /GENERALIZEDTIME\s*:20500101000000Z/);
  assert.match(opensslAsn1parse(in2050), /UTCTIME\s*:260101000000Z/);
  assert.match(opensslAsn1parse(in2049), /UTCTIME\s*:491231235959Z/);
  assert.doesNotMatch(opensslAsn1parse(in2049), /GENERALIZEDTIME/);
  assert.match(opensslText(in2050), /Not After : Jan {2}1 00:00:00 2050 GMT/);
  assert.equal(parseCertificate(in2050).notAfter, Date.UTC(2050, 0, 1));
  for (const leaf of [in2050, in2049]) {
    const r = opensslVerify({ roots: [root.der], intermediates: [interDer], leaf, atTime: Date.UTC(2049, 6, 1) });
    assert.ok(r.ok, r.output);
  }
});

test('a leaf may end exactly when its issuer does (to the encoded second), but a notAfter one second later is refused', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const key = generateKeyPair('ec-p256').publicKey;
  const end = parseCertificate(east.der).notAfter;
  assert.equal(signer.notAfter, end);
  const exact = signer.sign({ publicKey: key, spiffeId: ID, notBefore: T0, notAfter: end });
  assert.equal(parseCertificate(exact).notAfter, end);
  // X.509 Times hold whole seconds: a notAfter within the issuer's last second is encoded as the issuer's own end.
  const inLastSecond = signer.sign({ publicKey: key, spiffeId: ID, notBefore: T0, notAfter: end + 999 });
  assert.equal(parseCertificate(inLastSecond).notAfter, end);
  assert.throws(
    () => signer.sign({ publicKey: key, spiffeId: ID, notBefore: T0, notAfter: end + 1000 }),
    failsWith('failed_precondition', /beyond the issuing CA's notAfter .* does not truncate/),
  );
});

test('bad identities, names, keys and validity are refused with invalid_argument', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const publicKey = generateKeyPair('ec-p256').publicKey;
  const base: LeafRequest = { publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY };
  const cases: [Partial<LeafRequest>, RegExp][] = [
    [{ spiffeId: `spiffe://${TD}` }, /needs a path/],
    [{ spiffeId: 'spiffe://other.org/web' }, /not in trust domain "example.org"/],
    [{ spiffeId: 'https://example.org/web' }, /not a SPIFFE ID/],
    [{ spiffeId: `spiffe://${TD}/a/../b` }, /".." path segment/],
    [{ dnsNames: ['bad name'] }, /DNS name "bad name"/],
    [{ dnsNames: ['exämple.org'] }, /DNS name/],
    [{ dnsNames: ['a..b'] }, /DNS name/],
    [{ notAfter: T0 }, /at least a second after notBefore/],
    [{ notAfter: T0 + 999 }, /at least a second after notBefore/],
    [{ notBefore: Number.NaN }, /finite/],
    [{ publicKey: jobFreeKeyPair('ed25519').publicKey }, /ed25519 public keys are not accepted/],
    [{ publicKey: jobFreeKeyPair('rsa', { modulusLength: 1024 }).publicKey }, /shorter than 2048/],
    [{ publicKey: jobFreeKeyPair('ec', { namedCurve: 'secp256k1' }).publicKey }, /secp256k1 is not accepted/],
    [{ publicKey: Buffer.from('3003020100', 'hex') }, /not a valid SubjectPublicKeyInfo/],
  ];
  for (const [override, pattern] of cases) {
    assert.throws(() => signer.sign({ ...base, ...override }), failsWith('invalid_argument', pattern), JSON.stringify(Object.keys(override)));
  }
});

test('a signer cannot be built from a leaf certificate or with a key that does not match its CA', async () => {
  const { east, west } = await makePki('ec-p256');
  const leafKeys = generateKeyPair('ec-p256');
  const leaf = new LeafSigner(east.der, east.privateKey).sign({ publicKey: leafKeys.publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY });
  assert.throws(() => new LeafSigner(leaf, leafKeys.privateKey), failsWith('failed_precondition', /not a CA certificate/));
  assert.throws(() => new LeafSigner(east.der, west.privateKey), failsWith('invalid_argument', /does not match CA certificate/));
});

/** `openssl x509 -noout -subject -nameopt RFC2253` of a DER certificate: an independent reading of the subject. */
function opensslSubject(der: Buffer): string {
  const r = spawnSync('openssl', ['x509', '-inform', 'DER', '-noout', '-subject', '-nameopt', 'RFC2253'], { input: der, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('the first DNS name becomes the subject CN (as SPIRE sets it); without DNS names the subject stays O=meshid', async () => {
  const { root, east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const cases: [readonly string[] | undefined, string][] = [
    [['db.default.svc', 'db.local'], 'subject=CN=db.default.svc,O=meshid'],
    [['*.web.local', 'web.local'], 'subject=CN=*.web.local,O=meshid'],
    [[], 'subject=O=meshid'],
    [undefined, 'subject=O=meshid'],
  ];
  for (const [dnsNames, subject] of cases) {
    const der = signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, ...(dnsNames ? { dnsNames } : {}), notBefore: T0, notAfter: T0 + DAY });
    assert.equal(opensslSubject(der), subject, JSON.stringify(dnsNames));
    const leaf = parseCertificate(der);
    assert.deepEqual(leaf.uriSans, [ID], 'the SPIFFE ID is only ever the one URI SAN');
    assert.deepEqual(leaf.dnsNames, dnsNames ?? []);
    const r = opensslVerify({ roots: [root.der], intermediates: [east.der], leaf: der, atTime: T0 + 1000 });
    assert.ok(r.ok, `${JSON.stringify(dnsNames)}: ${r.output}`);
  }
});

test('a first DNS name longer than the 64 characters RFC 5280 allows a CN gets no CN; it stays in the SAN and the leaf verifies strictly', async () => {
  const { root, east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const at64 = `${'a'.repeat(55)}.svc.test`; // 64 characters: the longest CN allowed
  const at65 = `${'a'.repeat(56)}.svc.test`;
  assert.equal(at64.length, 64);
  for (const [dnsNames, subject] of [
    [[at64], `subject=CN=${at64},O=meshid`],
    [[at65, 'short.local'], 'subject=O=meshid'],
  ] as const) {
    const der = signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, dnsNames, notBefore: T0, notAfter: T0 + DAY });
    assert.equal(opensslSubject(der), subject, `first DNS name of ${dnsNames[0].length} characters`);
    assert.deepEqual(parseCertificate(der).dnsNames, dnsNames);
    const r = opensslVerify({ roots: [root.der], intermediates: [east.der], leaf: der, atTime: T0 + 1000 });
    assert.ok(r.ok, r.output);
  }
});

test('a P-521 CA signs leaves with ecdsa-with-SHA512 that openssl verifies strictly, and a key that cannot sign names P-521 among the choices', async () => {
  const rootKeys = jobFreeKeyPair('ec', { namedCurve: 'P-521' });
  const root = { ...rootKeys, der: await createRootCertificate({ trustDomain: TD, ...rootKeys, notBefore: T0 - 10_000, notAfter: T0 + 30 * DAY }) };
  const keys = jobFreeKeyPair('ec', { namedCurve: 'P-521' });
  const der = await createIntermediateCertificate({
    trustDomain: TD, datacenter: 'dc-east', publicKey: keys.publicKey, issuerCertDer: root.der, issuerPrivateKey: root.privateKey, notBefore: T0, notAfter: T0 + 10 * DAY,
  });
  const leaf = new LeafSigner(der, keys.privateKey).sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + DAY });
  assert.match(opensslText(leaf), /Signature Algorithm: ecdsa-with-SHA512/);
  const r = opensslVerify({ roots: [root.der], intermediates: [der], leaf, atTime: T0 + 1000 });
  assert.ok(r.ok, r.output);
  const ed = jobFreeKeyPair('ed25519');
  assert.throws(
    () => signatureAlgorithmFor(ed.privateKey),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && err.message === 'ed25519 keys are not supported for signing certificates (use EC P-256, P-384, P-521 or RSA of 2048 bits or more)',
  );
});
