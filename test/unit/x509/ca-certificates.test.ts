import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { isMeshidError } from '../../../src/common/errors.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { createIntermediateCertificate, createRootCertificate } from '../../../src/common/x509/ca-certificates.js';
import { generateKeyPair, type KeyType } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { compileServerConfig } from '../../../src/server/config.js';
import { opensslText, opensslVerify } from '../../support/openssl.js';
import { DAY, makeAuthority, makePki, makeRoot, T0, TD } from './pki-fixture.js';

const SIGNATURE: Record<KeyType, string> = {
  'ec-p256': 'ecdsa-with-SHA256',
  'ec-p384': 'ecdsa-with-SHA384',
  'rsa-2048': 'sha256WithRSAEncryption',
};

/** The lines of one extension in `openssl x509 -text` output, header included. */
function extensionText(text: string, name: string): string {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.trim().startsWith(`${name}:`));
  assert.notEqual(i, -1, `extension ${name} missing:\n${text}`);
  return `${lines[i]!.trim()} | ${lines[i + 1]!.trim()}`;
}

function serialOctets(der: Buffer): Buffer {
  return Buffer.from(parseCertificate(der).serialHex, 'hex');
}

for (const type of ['ec-p256', 'ec-p384', 'rsa-2048'] as KeyType[]) {
  test(`${type}: root and both datacenter intermediates pass openssl verify -x509_strict`, async () => {
    const { root, east, west } = await makePki(type);
    for (const cert of [root.der, east.der, west.der]) {
      const r = opensslVerify({ roots: [root.der], leaf: cert, atTime: T0 + 1000 });
      assert.ok(r.ok, r.output);
    }
  });

  test(`${type}: CA certificates carry exactly the SPEC-NOTES §4 profile`, async () => {
    const { root, east } = await makePki(type);
    const rootText = opensslText(root.der);
    const eastText = opensslText(east.der);
    for (const text of [rootText, eastText]) {
      assert.match(text, /Version: 3 \(0x2\)/);
      assert.match(text, new RegExp(`Signature Algorithm: ${SIGNATURE[type]}`));
      assert.equal(extensionText(text, 'X509v3 Key Usage'), 'X509v3 Key Usage: critical | Certificate Sign, CRL Sign');
      assert.match(extensionText(text, 'X509v3 Subject Alternative Name'), /^X509v3 Subject Alternative Name: \| URI:spiffe:\/\/example\.org$/);
      assert.match(extensionText(text, 'X509v3 Subject Key Identifier'), /^X509v3 Subject Key Identifier: \| [0-9A-F:]{59}$/);
      assert.doesNotMatch(text, /Extended Key Usage|Name Constraints/);
    }
    assert.equal(extensionText(rootText, 'X509v3 Basic Constraints'), 'X509v3 Basic Constraints: critical | CA:TRUE');
    assert.equal(extensionText(eastText, 'X509v3 Basic Constraints'), 'X509v3 Basic Constraints: critical | CA:TRUE, pathlen:0');
    assert.match(rootText, /Subject: O = meshid, CN = meshid root CA example\.org/);
    assert.match(eastText, /Issuer: O = meshid, CN = meshid root CA example\.org/);
    assert.match(eastText, /Subject: O = meshid, OU = dc-east, CN = meshid dc-east intermediate CA/);

    const r = parseCertificate(root.der);
    const e = parseCertificate(east.der);
    assert.equal(r.authorityKeyId, r.subjectKeyId);
    assert.equal(e.authorityKeyId, r.subjectKeyId);
    assert.notEqual(e.subjectKeyId, r.subjectKeyId);
    assert.deepEqual(r.uriSans, [`spiffe://${TD}`]);
    assert.deepEqual(e.uriSans, [`spiffe://${TD}`]);
    assert.equal(r.pathLenConstraint, undefined);
    assert.equal(e.pathLenConstraint, 0);
    assert.equal(e.notBefore, T0);
    assert.equal(e.notAfter, T0 + 30 * DAY);
    assert.ok(new X509Certificate(east.der).checkIssued(new X509Certificate(root.der)));
  });
}

test('serials are positive, at most 20 octets, minimally encoded and distinct', async () => {
  const root = await makeRoot('ec-p256');
  const serials = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const der = (await makeAuthority(root, `dc${i}`, 'ec-p256')).der;
    const s = serialOctets(der);
    assert.ok(s.length >= 1 && s.length <= 20);
    assert.ok(s[0]! < 0x80 && s[0]! !== 0, `serial ${s.toString('hex')} is not positive and minimal`);
    serials.add(s.toString('hex'));
  }
  assert.equal(serials.size, 20);
});

test('an intermediate may not outlive its root: failed_precondition, never a silent truncation', async () => {
  const root = await makeRoot('ec-p256', T0 + 10 * DAY);
  await assert.rejects(
    makeAuthority(root, 'dc-east', 'ec-p256', T0, T0 + 10 * DAY + 1000),
    (err: unknown) => isMeshidError(err, 'failed_precondition') && /beyond the issuing CA's notAfter/.test(err.message),
  );
  // Exactly the root's notAfter is allowed.
  const ok = await makeAuthority(root, 'dc-east', 'ec-p256', T0, T0 + 10 * DAY);
  assert.equal(parseCertificate(ok.der).notAfter, T0 + 10 * DAY);
});

test('CA creation refuses a non-CA issuer, a mismatched issuer key and bad input', async () => {
  const { root, east } = await makePki('ec-p256');
  const leaf = new LeafSigner(east.der, east.privateKey).sign({
    publicKey: generateKeyPair('ec-p256').publicKey,
    spiffeId: `spiffe://${TD}/w`,
    notBefore: T0,
    notAfter: T0 + DAY,
  });
  const base = { trustDomain: TD, datacenter: 'dc-x', publicKey: generateKeyPair('ec-p256').publicKey, notBefore: T0, notAfter: T0 + DAY };
  await assert.rejects(
    createIntermediateCertificate({ ...base, issuerCertDer: leaf, issuerPrivateKey: east.privateKey }),
    (err: unknown) => isMeshidError(err, 'failed_precondition') && /is not a CA/.test(err.message),
  );
  await assert.rejects(
    createIntermediateCertificate({ ...base, issuerCertDer: east.der, issuerPrivateKey: east.privateKey }),
    (err: unknown) => isMeshidError(err, 'failed_precondition') && /pathLenConstraint 0/.test(err.message),
  );
  await assert.rejects(
    createIntermediateCertificate({ ...base, issuerCertDer: root.der, issuerPrivateKey: east.privateKey }),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && /does not match the issuing CA/.test(err.message),
  );
  await assert.rejects(
    createIntermediateCertificate({ ...base, trustDomain: 'other.org', issuerCertDer: root.der, issuerPrivateKey: root.privateKey }),
    (err: unknown) => isMeshidError(err, 'failed_precondition') && /belongs to spiffe:\/\/example\.org/.test(err.message),
  );
  await assert.rejects(
    createIntermediateCertificate({ ...base, datacenter: 'dc east', issuerCertDer: root.der, issuerPrivateKey: root.privateKey }),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && /datacenter/.test(err.message),
  );
  const keys = generateKeyPair('ec-p256');
  await assert.rejects(
    createRootCertificate({ trustDomain: 'Example.org', ...keys, notBefore: T0, notAfter: T0 + DAY }),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && /trust domain/.test(err.message),
  );
  await assert.rejects(
    createRootCertificate({ trustDomain: TD, ...keys, notBefore: T0, notAfter: T0 + 999 }),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && /at least a second after notBefore/.test(err.message),
  );
  await assert.rejects(
    createRootCertificate({ trustDomain: TD, privateKey: keys.privateKey, publicKey: generateKeyPair('ec-p256').publicKey, notBefore: T0, notAfter: T0 + DAY }),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && /does not match its public key/.test(err.message),
  );
});

test('a long trust domain keeps the root common name within 64 characters', async () => {
  const td = `${'a'.repeat(60)}.example.org`;
  const keys = generateKeyPair('ec-p256');
  const der = await createRootCertificate({ trustDomain: td, ...keys, notBefore: T0, notAfter: T0 + DAY });
  const parsed = parseCertificate(der);
  assert.equal(parsed.subject, 'O=meshid, CN=meshid root CA');
  assert.deepEqual(parsed.uriSans, [`spiffe://${td}`]);
});

test('a trust domain with an empty label, which Go cannot parse in a URI SAN, gets no CA certificate; the server config refuses it too', async () => {
  const keys = generateKeyPair('ec-p256');
  for (const [td, hint] of [['example.org.', /; use "example\.org"$/], ['.example', /; use "example"$/], ['a..b', /; use "a\.b"$/]] as const) {
    const refusedAs = (prefix: string) => (err: unknown): boolean =>
      isMeshidError(err, 'invalid_argument') && new RegExp(`^${prefix}trust domain "${td.replace(/\./g, '\\.')}" has an empty label .*Go's crypto/x509`).test(err.message) && hint.test(err.message);
    await assert.rejects(createRootCertificate({ trustDomain: td, ...keys, notBefore: T0, notAfter: T0 + DAY }), refusedAs(''));
    assert.throws(() => compileServerConfig({ trust_domain: td }), refusedAs('trust_domain: '));
    assert.throws(() => compileServerConfig({ trust_domain: `spiffe://${td}` }), refusedAs('trust_domain: '));
  }
  const root = await makeRoot('ec-p256');
  await assert.rejects(
    createIntermediateCertificate({ trustDomain: 'example.org.', datacenter: 'east', ...generateKeyPair('ec-p256'), issuerCertDer: root.der, issuerPrivateKey: root.privateKey, notBefore: T0, notAfter: T0 + DAY }),
    (err: unknown) => isMeshidError(err, 'invalid_argument') && /has an empty label/.test(err.message),
  );
});
