/**
 * The hand-built leaf against @peculiar/x509 (a separate ASN.1 implementation): given the same serial, validity,
 * names, key and extensions, the library must produce the very same TBSCertificate bytes, and it must read back every
 * field meshid wrote. RSA PKCS#1 v1.5 signatures are deterministic, so for an RSA issuer the whole certificate matches.
 */
import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { readCertificateStructure } from '../../../src/common/x509/certificate-structure.js';
import { exportPkcs8Der, generateKeyPair, spkiDer, type KeyType } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { DAY, makePki, T0, TD } from './pki-fixture.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ID = `spiffe://${TD}/ns/default/sa/web`;
const DNS = ['web.default.svc'];

type W = typeof webcrypto;
const SIGNING: Record<KeyType, { import: Parameters<W['subtle']['importKey']>[2]; sign: { name: string; hash?: string } }> = {
  'ec-p256': { import: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
  'ec-p384': { import: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } },
  'rsa-2048': { import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
};

for (const issuerType of ['ec-p256', 'ec-p384', 'rsa-2048'] as KeyType[]) {
  test(`${issuerType} issuer: @peculiar/x509 encodes the same leaf TBSCertificate byte for byte`, async () => {
    const { east } = await makePki(issuerType);
    const leafKeys = generateKeyPair(issuerType === 'rsa-2048' ? 'rsa-2048' : 'ec-p256');
    const isRsaLeaf = leafKeys.publicKey.asymmetricKeyType === 'rsa';
    const notBefore = T0 - 10_000;
    const notAfter = T0 + DAY;
    const ours = new LeafSigner(east.der, east.privateKey).sign({ publicKey: leafKeys.publicKey, spiffeId: ID, dnsNames: DNS, notBefore, notAfter });
    const mine = readCertificateStructure(ours);
    const issuer = readCertificateStructure(east.der);

    const signingKey = await webcrypto.subtle.importKey('pkcs8', exportPkcs8Der(east.privateKey), SIGNING[issuerType].import, false, ['sign']);
    const ski = await x509.SubjectKeyIdentifierExtension.create(spkiDer(leafKeys.publicKey));
    const theirs = await x509.X509CertificateGenerator.create({
      serialNumber: mine.serial.toString('hex'),
      subject: new x509.Name(mine.subjectName),
      issuer: new x509.Name(issuer.subjectName),
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      publicKey: spkiDer(leafKeys.publicKey),
      signingKey,
      signingAlgorithm: SIGNING[issuerType].sign,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          isRsaLeaf ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectKeyIdentifierExtension(ski.keyId, false),
        new x509.AuthorityKeyIdentifierExtension(issuer.extensions.find((e) => e.oid === '2.5.29.14')!.value.subarray(2).toString('hex'), false),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }, ...DNS.map((d) => ({ type: 'dns' as const, value: d }))], false),
      ],
    });
    const theirsDer = Buffer.from(theirs.rawData);
    assert.equal(readCertificateStructure(theirsDer).tbs.toString('hex'), mine.tbs.toString('hex'));
    if (issuerType === 'rsa-2048') assert.deepEqual(theirsDer, ours);
  });
}

test('@peculiar/x509 reads back every field of a hand-built leaf', async () => {
  const { east } = await makePki('ec-p256');
  const leafKeys = generateKeyPair('ec-p256');
  const der = new LeafSigner(east.der, east.privateKey).sign({ publicKey: leafKeys.publicKey, spiffeId: ID, dnsNames: DNS, notBefore: T0, notAfter: T0 + DAY });
  const cert = new x509.X509Certificate(der);
  const issuer = new x509.X509Certificate(east.der);
  assert.equal(cert.subject, `O=meshid, CN=${DNS[0]}`);
  assert.equal(cert.issuer, issuer.subject);
  assert.equal(cert.notBefore.getTime(), T0);
  assert.equal(cert.notAfter.getTime(), T0 + DAY);
  assert.equal((cert.signatureAlgorithm as { name?: string }).name, 'ECDSA');
  assert.ok(await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }));
  const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
  assert.equal(bc.ca, false);
  assert.equal(bc.critical, true);
  const ku = cert.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
  assert.equal(ku.critical, true);
  assert.deepEqual([...cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages], ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.equal(san.critical, false);
  assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: ID }, { type: 'dns', value: DNS[0] }]);
  assert.equal(cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, issuer.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
  assert.equal(cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, (await x509.SubjectKeyIdentifierExtension.create(spkiDer(leafKeys.publicKey))).keyId);
});
