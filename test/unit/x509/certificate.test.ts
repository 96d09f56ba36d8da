import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { isMeshidError } from '../../../src/common/errors.js';
import { Oid, signatureAlgorithmFor } from '../../../src/common/x509/algorithms.js';
import { buildCertificate } from '../../../src/common/x509/certificate-builder.js';
import { certificateKeyIds, parseCertificate, parseCertificateLazily } from '../../../src/common/x509/certificate.js';
import { checkTrustAnchor, verifyCaChain, verifyChain, verifyParsedChain } from '../../../src/common/x509/chain-verification.js';
import {
  authorityKeyIdentifierValue,
  basicConstraintsValue,
  extension,
  keyIdentifierOfSpki,
  keyUsageValue,
  subjectAltNameValue,
  subjectKeyIdentifierValue,
} from '../../../src/common/x509/extensions.js';
import { generateKeyPair, spkiDer } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { encodeName } from '../../../src/common/x509/name.js';
import { opensslSelfSigned } from '../../support/openssl.js';
import { DAY, makeAuthority, makePki, T0, TD, type Authority } from './pki-fixture.js';

const ID = `spiffe://${TD}/web`;
const NOW = T0 + 1000;
const isInvalid = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'invalid_argument') && pattern.test(err.message);

function issueLeaf(issuer: Authority, notAfter = T0 + DAY): Buffer {
  return new LeafSigner(issuer.der, issuer.privateKey).sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore: T0, notAfter });
}

/** A certificate signed by `issuer` with arbitrary extensions, for shapes meshid itself refuses to make. */
function issueRaw(issuer: Authority, extensions: Buffer[], subject = encodeName([['O', 'test'], ['CN', 'raw']])): Authority {
  const keys = generateKeyPair('ec-p256');
  const der = buildCertificate(
    {
      issuerName: parseCertificate(issuer.der).structure.subjectName,
      subjectName: subject,
      notBefore: T0,
      notAfter: T0 + DAY,
      spki: spkiDer(keys.publicKey),
      extensions,
    },
    { key: issuer.privateKey, algorithm: signatureAlgorithmFor(issuer.privateKey) },
  );
  return { der, ...keys };
}

function caExtensions(issuer: Authority, publicKeySpki: Buffer): Buffer[] {
  return [
    extension(Oid.basicConstraints, true, basicConstraintsValue(true)),
    extension(Oid.keyUsage, true, keyUsageValue(['keyCertSign'])),
    extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(keyIdentifierOfSpki(publicKeySpki))),
    extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(Buffer.from(parseCertificate(issuer.der).subjectKeyId!, 'hex'))),
  ];
}

test('parseCertificate reads an openssl-made certificate field by field', () => {
  const der = opensslSelfSigned({
    subject: '/O=acme/OU=unit/CN=parser test',
    serial: '0x00ff0102030405060708090a0b0c0d0e0f1011',
    days: 2,
    extensions: [
      'subjectAltName=URI:spiffe://acme.org/a,DNS:a.acme.org,DNS:b.acme.org,IP:10.0.0.1',
      'basicConstraints=critical,CA:TRUE,pathlen:3',
      'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
      'extendedKeyUsage=serverAuth,clientAuth',
    ],
  });
  const x = new X509Certificate(der);
  const p = parseCertificate(der);
  assert.equal(p.serialHex, '00ff0102030405060708090a0b0c0d0e0f1011');
  assert.equal(p.subject, 'O=acme, OU=unit, CN=parser test');
  assert.equal(p.issuer, p.subject);
  assert.equal(p.notBefore, new Date(x.validFrom).getTime());
  assert.equal(p.notAfter, new Date(x.validTo).getTime());
  assert.equal(p.notAfter - p.notBefore, 2 * DAY);
  assert.equal(p.isCa, true);
  assert.equal(p.pathLenConstraint, 3);
  assert.deepEqual(p.uriSans, ['spiffe://acme.org/a']);
  assert.deepEqual(p.dnsNames, ['a.acme.org', 'b.acme.org']);
  assert.deepEqual(p.keyUsage, ['digitalSignature', 'keyCertSign', 'cRLSign']);
  assert.deepEqual(p.extKeyUsage, [Oid.serverAuth, Oid.clientAuth]);
  assert.equal(p.fingerprintSha256, createHash('sha256').update(der).digest('hex'));
  assert.equal(p.fingerprintSha256, x.fingerprint256.replace(/:/g, '').toLowerCase());
  assert.ok(p.publicKey.equals(x.publicKey));
  assert.match(p.subjectKeyId ?? '', /^[0-9a-f]{40}$/);
  assert.equal(p.authorityKeyId, p.subjectKeyId);
});

test('parseCertificate refuses what is not a certificate', async () => {
  const { root } = await makePki('ec-p256');
  assert.throws(() => parseCertificate(Buffer.alloc(0)), isInvalid(/malformed certificate/));
  assert.throws(() => parseCertificate(Buffer.from('hello')), isInvalid(/malformed certificate/));
  assert.throws(() => parseCertificate(root.der.subarray(0, root.der.length - 5)), isInvalid(/malformed certificate/));
  assert.throws(() => parseCertificate(Buffer.concat([root.der, Buffer.from([0])])), isInvalid(/malformed certificate/));
});

test('a leaf → intermediate chain verifies against its root, with or without the root appended', async () => {
  const { root, east, west } = await makePki('ec-p256');
  const leaf = issueLeaf(east);
  verifyChain([leaf, east.der], [root.der], NOW);
  verifyChain([leaf, east.der, root.der], [root.der], NOW, { requireEndEntity: true });
  verifyChain([issueLeaf(west), west.der], [root.der], NOW);
  verifyChain([east.der], [root.der], NOW);
});

test('a chain with the wrong intermediate fails, naming the mismatch', async () => {
  const { root, east, west } = await makePki('ec-p256');
  assert.throws(() => verifyChain([issueLeaf(east), west.der], [root.der], NOW), isInvalid(/names issuer "O=meshid, OU=dc-east.*subject "O=meshid, OU=dc-west/));
});

test('an intermediate with the same name but another key (a rotated CA) fails on AKI and signature', async () => {
  const { root, east } = await makePki('ec-p256');
  const successor = await makeAuthority(root, 'dc-east', 'ec-p256');
  assert.throws(() => verifyChain([issueLeaf(east), successor.der], [root.der], NOW), isInvalid(/authority key identifier .* key identifier/));
  // Without the AKI shortcut, the signature check catches it.
  const noAki = issueRaw(east, [extension(Oid.subjectAltName, false, subjectAltNameValue([ID], []))]);
  assert.throws(() => verifyChain([noAki.der, successor.der], [root.der], NOW), isInvalid(/signature on certificate 0 .* does not verify/));
});

test('a tampered leaf signature fails', async () => {
  const { root, east } = await makePki('ec-p256');
  const leaf = Buffer.from(issueLeaf(east));
  leaf[leaf.length - 8]! ^= 0x01;
  assert.throws(() => verifyChain([leaf, east.der], [root.der], NOW), isInvalid(/signature on certificate 0 .* does not verify/));
});

test('after the intermediate → root link verified once, a tampered copy of the intermediate still fails', async () => {
  const { root, east } = await makePki('ec-p256');
  verifyChain([issueLeaf(east), east.der], [root.der], NOW);
  // The same intermediate with one signature bit flipped: different bytes, so nothing remembered applies to it.
  const tampered = Buffer.from(east.der);
  tampered[tampered.length - 8]! ^= 0x01;
  assert.throws(() => verifyChain([issueLeaf(east), tampered], [root.der], NOW), isInvalid(/signature on certificate 1 .* does not verify with the key of trusted root/));
  verifyChain([issueLeaf(east), east.der], [root.der], NOW);
});

test('verifyCaChain checks an intermediate alone against the roots: signature, validity and a root of its own', async () => {
  const { root, east } = await makePki('ec-p256');
  verifyCaChain([east.der], [root.der], NOW);
  verifyCaChain([east.der, root.der], [root.der], NOW);
  const other = await makePki('ec-p256');
  assert.throws(() => verifyCaChain([east.der], [other.root.der], NOW), isInvalid(/certificate 0 .* has authority key identifier/));
  assert.throws(() => verifyCaChain([east.der], [root.der], T0 + 31 * DAY), isInvalid(/certificate 0 .* expired/));
  assert.throws(() => verifyCaChain([], [root.der], NOW), isInvalid(/empty/));
});

test('validity is checked at the given time, for leaf and issuers alike', async () => {
  const { root, east } = await makePki('ec-p256');
  const leaf = issueLeaf(east);
  assert.throws(() => verifyChain([leaf, east.der], [root.der], T0 - 1000), isInvalid(/certificate 0 .* is not valid before 2026-01-01T00:00:00.000Z/));
  assert.throws(() => verifyChain([leaf, east.der], [root.der], T0 + DAY + 1000), isInvalid(/certificate 0 .* expired at 2026-01-02/));
  const longLeaf = issueLeaf(east, T0 + 30 * DAY);
  assert.throws(() => verifyChain([longLeaf, east.der], [root.der], T0 + 30 * DAY + 1000), isInvalid(/expired/));
  verifyChain([longLeaf, east.der], [root.der], T0 + 30 * DAY);
});

test('a chain to another trust domain root is not trusted', async () => {
  const ours = await makePki('ec-p256');
  const theirs = await makePki('ec-p256');
  assert.throws(() => verifyChain([issueLeaf(ours.east), ours.east.der], [theirs.root.der], NOW), isInvalid(/certificate 1 \(O=meshid, OU=dc-east, CN=meshid dc-east intermediate CA\) has authority key identifier [0-9a-f]{40}, but trusted root \(O=meshid, CN=meshid root CA example.org\)/));
  assert.throws(() => verifyChain([issueLeaf(ours.east)], [ours.root.der], NOW), isInvalid(/issued by "O=meshid, OU=dc-east.*not a trusted root/));
});

test('a non-CA issuer, a pathLenConstraint violation and an unknown critical extension each fail', async () => {
  const { root, east } = await makePki('ec-p256');
  // A "leaf" that signs another certificate.
  const fakeCa = issueRaw(east, [
    extension(Oid.basicConstraints, true, basicConstraintsValue(false)),
    extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(Buffer.from(parseCertificate(east.der).subjectKeyId!, 'hex'))),
  ]);
  const underFake = issueRaw(fakeCa, []);
  assert.throws(() => verifyChain([underFake.der, fakeCa.der, east.der], [root.der], NOW), isInvalid(/certificate 1 .* is not a CA/));

  // east has pathLenConstraint 0, so a CA below it is one too many.
  const keys = generateKeyPair('ec-p256');
  const subCaDer = buildCertificate(
    {
      issuerName: parseCertificate(east.der).structure.subjectName,
      subjectName: encodeName([['O', 'meshid'], ['CN', 'sub CA']]),
      notBefore: T0,
      notAfter: T0 + DAY,
      spki: spkiDer(keys.publicKey),
      extensions: caExtensions(east, spkiDer(keys.publicKey)),
    },
    { key: east.privateKey, algorithm: signatureAlgorithmFor(east.privateKey) },
  );
  const subCa = { der: subCaDer, ...keys };
  assert.throws(() => verifyChain([issueLeaf(subCa), subCa.der, east.der], [root.der], NOW), isInvalid(/certificate 2 .* allows 0 intermediate/));

  const odd = issueRaw(east, [extension('1.2.3.4', true, Buffer.from([0x05, 0x00]))]);
  assert.throws(() => verifyChain([odd.der, east.der], [root.der], NOW), isInvalid(/unsupported critical extension 1\.2\.3\.4/));
});

test('a CA whose keyUsage lacks keyCertSign issues nothing: chains through it fail, and no leaf signer is built on it', async () => {
  const { root } = await makePki('ec-p256');
  const keys = generateKeyPair('ec-p256');
  const spki = spkiDer(keys.publicKey);
  const der = buildCertificate(
    {
      issuerName: parseCertificate(root.der).structure.subjectName,
      subjectName: encodeName([['O', 'test'], ['CN', 'signing-only CA']]),
      notBefore: T0,
      notAfter: T0 + DAY,
      spki,
      // cA true, but its key may only sign data (RFC 5280 §4.2.1.3: keyCertSign is what lets it sign certificates).
      extensions: [
        extension(Oid.basicConstraints, true, basicConstraintsValue(true)),
        extension(Oid.keyUsage, true, keyUsageValue(['digitalSignature'])),
        extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(keyIdentifierOfSpki(spki))),
        extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(Buffer.from(parseCertificate(root.der).subjectKeyId!, 'hex'))),
      ],
    },
    { key: root.privateKey, algorithm: signatureAlgorithmFor(root.privateKey) },
  );
  const signingOnly: Authority = { der, ...keys };
  const leaf = issueRaw(signingOnly, []);
  assert.throws(() => verifyChain([leaf.der, signingOnly.der], [root.der], NOW), isInvalid(/certificate 1 .* keyUsage lacks keyCertSign/));
  assert.throws(() => new LeafSigner(signingOnly.der, signingOnly.privateKey), (err: unknown) => isMeshidError(err, 'failed_precondition') && /lacks the keyCertSign key usage/.test(err.message));
});

test('a trusted root past its notAfter anchors nothing, though the certificates below it are still valid', () => {
  const keys = generateKeyPair('ec-p256');
  const spki = spkiDer(keys.publicKey);
  const name = encodeName([['O', 'test'], ['CN', 'expired root']]);
  const ski = keyIdentifierOfSpki(spki);
  const der = buildCertificate(
    {
      issuerName: name,
      subjectName: name,
      notBefore: T0 - 10 * DAY,
      notAfter: T0 - DAY,
      spki,
      extensions: [
        extension(Oid.basicConstraints, true, basicConstraintsValue(true)),
        extension(Oid.keyUsage, true, keyUsageValue(['keyCertSign'])),
        extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(ski)),
        extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(ski)),
      ],
    },
    { key: keys.privateKey, algorithm: signatureAlgorithmFor(keys.privateKey) },
  );
  const expiredRoot: Authority = { der, ...keys };
  // Issued by hand with a validity the root does not cover, as a foreign CA may do; meshid's own signer refuses that.
  const leaf = issueRaw(expiredRoot, [extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(ski))]);
  assert.throws(() => verifyChain([leaf.der], [expiredRoot.der], NOW), isInvalid(/trusted root \(O=test, CN=expired root\) expired at/));
});

test('checkTrustAnchor accepts a root and refuses what verifiers cannot anchor on: an intermediate, name constraints, a bad self-signature', async () => {
  const { root, east } = await makePki('ec-p256');
  checkTrustAnchor(root.der, NOW, 'upstream');
  assert.throws(() => checkTrustAnchor(root.der, T0 + 400 * DAY, 'upstream'), isInvalid(/upstream .* expired/));
  assert.throws(() => checkTrustAnchor(east.der, NOW, 'upstream'), isInvalid(/upstream \(O=meshid, OU=dc-east.*\) is not self-signed: it was issued by "O=meshid, CN=meshid root CA example.org"/));

  // Self-issued CAs signed by their own key, but one with critical name constraints (RFC 5280 §4.2.1.10 wants them
  // critical; agents' verifier does not evaluate them), and one signed by another key.
  const selfIssued = (extras: Buffer[], signer?: Authority): Buffer => {
    const keys = generateKeyPair('ec-p256');
    const name = encodeName([['O', 'Example Corp'], ['CN', 'Corporate Root']]);
    const spki = spkiDer(keys.publicKey);
    return buildCertificate(
      {
        issuerName: name,
        subjectName: name,
        notBefore: T0,
        notAfter: T0 + DAY,
        spki,
        extensions: [
          extension(Oid.basicConstraints, true, basicConstraintsValue(true)),
          extension(Oid.keyUsage, true, keyUsageValue(['keyCertSign'])),
          extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(keyIdentifierOfSpki(spki))),
          ...extras,
        ],
      },
      { key: (signer ?? keys).privateKey, algorithm: signatureAlgorithmFor((signer ?? keys).privateKey) },
    );
  };
  checkTrustAnchor(selfIssued([]), NOW, 'upstream');
  const nameConstraints = extension('2.5.29.30', true, Buffer.from([0x30, 0x00]));
  assert.throws(() => checkTrustAnchor(selfIssued([nameConstraints]), NOW, 'upstream'), isInvalid(/unsupported critical extension 2\.5\.29\.30 \(nameConstraints\), which meshid's chain verification does not evaluate/));
  assert.throws(() => checkTrustAnchor(selfIssued([], root), NOW, 'upstream'), isInvalid(/signature/));
  const notCa = issueRaw(root, [extension(Oid.basicConstraints, true, basicConstraintsValue(false))]);
  assert.throws(() => checkTrustAnchor(notCa.der, NOW, 'upstream'), isInvalid(/not a CA/));
});

test('requireEndEntity refuses a CA certificate as the first element; empty inputs are refused', async () => {
  const { root, east } = await makePki('ec-p256');
  assert.throws(() => verifyChain([east.der], [root.der], NOW, { requireEndEntity: true }), isInvalid(/is a CA certificate, not an end entity/));
  assert.throws(() => verifyChain([], [root.der], NOW), isInvalid(/chain is empty/));
  assert.throws(() => verifyChain([east.der], [], NOW), isInvalid(/no trusted root/));
  assert.throws(() => verifyChain([Buffer.from('junk')], [root.der], NOW), isInvalid(/chain certificate 0: malformed certificate/));
});

test('verifyParsedChain takes a parsed leaf; issuers served from the parse memo are still checked', async () => {
  const { root, east, west } = await makePki('ec-p256');
  const leaf = parseCertificate(issueLeaf(east));
  verifyParsedChain(leaf, [east.der], [root.der], NOW, { requireEndEntity: true });
  // The parse memo is keyed by content: another intermediate is judged as itself, however often east was seen.
  for (let i = 0; i < 3; i++) verifyParsedChain(leaf, [Buffer.from(east.der)], [root.der], NOW);
  assert.throws(() => verifyParsedChain(leaf, [west.der], [root.der], NOW), isInvalid(/names issuer .*dc-east.*dc-west/));
});

test('certificateKeyIds reads SKI and AKI without OpenSSL, matching parseCertificate', async () => {
  const { root, east } = await makePki('ec-p256');
  for (const der of [root.der, east.der, issueLeaf(east)]) {
    const full = parseCertificate(der);
    assert.deepEqual(certificateKeyIds(der), {
      ...(full.subjectKeyId ? { subjectKeyId: full.subjectKeyId } : {}),
      ...(full.authorityKeyId ? { authorityKeyId: full.authorityKeyId } : {}),
    });
  }
  assert.equal(certificateKeyIds(east.der).authorityKeyId, parseCertificate(root.der).subjectKeyId);
  assert.throws(() => certificateKeyIds(Buffer.from('not a certificate')), isInvalid(/malformed certificate/));
});

test('parseCertificateLazily reads what parseCertificate reads; a chain from it verifies and a tampered one fails', async () => {
  for (const type of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
    const { root, east } = await makePki(type);
    const der = issueLeaf(east);
    const eager = parseCertificate(der);
    const lazy = parseCertificateLazily(der);
    for (const field of ['serialHex', 'notBefore', 'notAfter', 'subject', 'issuer', 'isCa', 'uriSans', 'dnsNames', 'subjectKeyId', 'authorityKeyId', 'keyUsage', 'extKeyUsage', 'fingerprintSha256'] as const) {
      assert.deepEqual(lazy[field], eager[field], `${type} ${field}`);
    }
    assert.ok(lazy.publicKey.equals(eager.publicKey));
    verifyParsedChain(parseCertificateLazily(der), [east.der], [root.der], NOW, { requireEndEntity: true });
    const tampered = Buffer.from(der);
    tampered[tampered.length - 8]! ^= 0x01;
    assert.throws(() => verifyParsedChain(parseCertificateLazily(tampered), [east.der], [root.der], NOW), isInvalid(/signature on certificate 0 .* does not verify/));
  }
  assert.throws(() => parseCertificateLazily(Buffer.from('junk')), isInvalid(/malformed certificate/));
});
