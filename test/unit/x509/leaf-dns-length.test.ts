import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { DAY, makePki, T0, TD } from './pki-fixture.js';

// RFC 1035: a host name is at most 253 characters written out. Every label below is valid, so only the length decides.
// Four labels of 63, cut to `length` (at most 255): the last label keeps 61 or more characters, never a dot at the end.
const nameOf = (length: number): string => Array.from({ length: 4 }, () => 'a'.repeat(63)).join('.').slice(0, length);

test('a leaf takes a DNS name of 253 characters and refuses one of 254', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const publicKey = generateKeyPair('ec-p256').publicKey;
  const sign = (dns: string): Buffer => signer.sign({ publicKey, spiffeId: `spiffe://${TD}/w`, dnsNames: [dns], notBefore: T0, notAfter: T0 + DAY });
  const longest = nameOf(253);
  assert.equal(longest.length, 253);
  assert.deepEqual(parseCertificate(sign(longest)).dnsNames, [longest]);
  const tooLong = nameOf(254);
  assert.equal(tooLong.length, 254);
  assert.throws(() => sign(tooLong), (e: unknown) => isMeshidError(e, 'invalid_argument') && /is not a valid host name/.test(e.message));
});
