import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bitStringBytes, boolean, explicit, implicitConstructed, implicitPrimitive, octetString, oid, sequence, setOf, smallInteger, time, unsignedInteger, utf8String } from '../../../src/common/x509/der.js';
import { readBitStringBytes, readBoolean, readSingle, readSmallInteger, readTime, readTlv } from '../../../src/common/x509/der-reader.js';
import { readCertificateStructure } from '../../../src/common/x509/certificate-structure.js';
import { decodeSpki } from '../../../src/common/x509/spki.js';
import { decodeAuthorityKeyIdentifier, decodeBasicConstraints, decodeSubjectAltName, extension, subjectAltNameValue } from '../../../src/common/x509/extensions.js';

/*
 * What the DER reader and the certificate walk refuse, for certificates meshid reads from others (federated and
 * upstream bundles, peers' chains, CSRs): encodings DER forbids and certificates RFC 5280 forbids, each of which a
 * lenient reader would take as something else. Built by hand, since no library writes them.
 */

const ALG = sequence(oid('1.2.840.10045.4.3.2'));
const NAME = sequence(setOf(sequence(oid('2.5.4.3'), utf8String('test'))));
const SPKI = sequence(sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')), bitStringBytes(Buffer.alloc(65, 4)));
const SKI = extension('2.5.29.14', false, octetString(Buffer.alloc(20, 1)));
const BC = extension('2.5.29.19', true, sequence());

/** A v3 certificate (unsigned: the walk does not verify) with these extensions and extra TBS fields after the key. */
function certificate(extensions: Buffer[], extraFields: Buffer[] = [], signature = bitStringBytes(Buffer.from([1, 2, 3])), version: Buffer[] = [explicit(0, smallInteger(2))]): Buffer {
  const tbs = sequence(
    ...version, unsignedInteger(Buffer.from([1])), ALG, NAME, sequence(time(Date.UTC(2026, 0, 1)), time(Date.UTC(2026, 1, 1))), NAME, SPKI,
    ...extraFields, explicit(3, sequence(...extensions)),
  );
  return sequence(tbs, ALG, signature);
}

test('the hand-built certificate parses (the baseline the refusals below differ from in one place)', () => {
  const c = readCertificateStructure(certificate([SKI, BC]));
  assert.equal(c.version, 3);
  assert.deepEqual(c.extensions.map((e) => [e.oid, e.critical]), [['2.5.29.14', false], ['2.5.29.19', true]]);
});

test('an extension listed twice is refused (RFC 5280 §4.2)', () => {
  assert.throws(() => readCertificateStructure(certificate([BC, SKI, BC])), /2\.5\.29\.19 appears twice/);
});

test('a TBSCertificate field other than the unique IDs and [3] extensions is refused', () => {
  assert.throws(() => readCertificateStructure(certificate([SKI], [explicit(4, sequence())])), /unexpected TBSCertificate field with tag 0xa4/);
  assert.doesNotThrow(() => readCertificateStructure(certificate([SKI], [implicitPrimitive(1, Buffer.from([0, 1]))])), 'issuerUniqueID is skipped');
});

test('a critical flag that is not a DER BOOLEAN (0x01 rather than 0xff) is refused, in the walk and by readBoolean', () => {
  const lax = sequence(oid('2.5.29.19'), Buffer.from([0x01, 0x01, 0x01]), octetString(sequence()));
  assert.throws(() => readCertificateStructure(certificate([SKI, lax])), /malformed BOOLEAN/);
  assert.equal(readBoolean(readTlv(boolean(true))), true);
  assert.equal(readBoolean(readTlv(boolean(false))), false);
  assert.throws(() => readBoolean(readTlv(Buffer.from([0x01, 0x01, 0x01]))), /malformed BOOLEAN/);
});

test('a BIT STRING with unused bits is refused where whole bytes are required (keys, signatures)', () => {
  assert.throws(() => readBitStringBytes(readTlv(Buffer.from([0x03, 0x03, 0x01, 0xaa, 0xaa]))), /whole bytes/);
  assert.throws(() => readCertificateStructure(certificate([SKI], [], Buffer.from([0x03, 0x03, 0x04, 0xaa, 0xa0]))), /whole bytes/);
});

test('a long-form length with a leading zero octet is not DER, even when the value needs the long form', () => {
  const minimal = Buffer.concat([Buffer.from([0x04, 0x81, 0x80]), Buffer.alloc(128)]);
  assert.equal(readSingle(minimal, 'test').end, minimal.length);
  const padded = Buffer.concat([Buffer.from([0x04, 0x82, 0x00, 0x80]), Buffer.alloc(128)]);
  assert.throws(() => readSingle(padded, 'test'), /non-minimal/);
});

test('a GeneralizedTime with fractional seconds or an offset is refused (RFC 5280 §4.1.2.5.2: YYYYMMDDHHMMSSZ)', () => {
  const generalized = (s: string) => readTlv(Buffer.concat([Buffer.from([0x18, s.length]), Buffer.from(s, 'latin1')]));
  assert.equal(readTime(generalized('20500101000000Z')), Date.UTC(2050, 0, 1));
  for (const s of ['20500101000000.5Z', '20500101000000+0100', '20500101000000', '20500101000000Z0']) {
    assert.throws(() => readTime(generalized(s)), /malformed GeneralizedTime/, s);
  }
});

test('authorityKeyIdentifier yields only its [0] keyIdentifier; an issuer name and serial alone give none', () => {
  const keyId = Buffer.alloc(20, 7);
  assert.deepEqual(decodeAuthorityKeyIdentifier(sequence(implicitPrimitive(0, keyId))), keyId);
  assert.equal(decodeAuthorityKeyIdentifier(sequence(implicitConstructed(1, NAME), implicitPrimitive(2, Buffer.from([5])))), undefined);
  assert.equal(decodeAuthorityKeyIdentifier(sequence(octetString(keyId))), undefined, 'a universal OCTET STRING is not [0]');
});

test('subjectAltName counts as URIs only primitive [6] names; a constructed [6] is another kind', () => {
  const sans = decodeSubjectAltName(sequence(implicitPrimitive(6, Buffer.from('spiffe://example.org/a')), implicitConstructed(6, utf8String('spiffe://example.org/b'))));
  assert.deepEqual(sans, { uris: ['spiffe://example.org/a'], dnsNames: [], others: 1 });
});

test('extensions in a v1 certificate (no version field) or a v2 one are refused', () => {
  assert.throws(() => readCertificateStructure(certificate([SKI], [], undefined, [])), /extensions require a v3 certificate/);
  assert.throws(() => readCertificateStructure(certificate([SKI], [], undefined, [explicit(0, smallInteger(1))])), /extensions require a v3 certificate/);
});

test('a negative small INTEGER (version, pathLenConstraint) is refused, not read as a large one', () => {
  assert.equal(readSmallInteger(readTlv(smallInteger(127))), 127);
  assert.throws(() => readSmallInteger(readTlv(Buffer.from([0x02, 0x01, 0xff]))), /out-of-range INTEGER/);
  assert.throws(() => decodeBasicConstraints(sequence(boolean(true), Buffer.from([0x02, 0x01, 0xff]))), /out-of-range INTEGER/);
});

test('basicConstraints with fields out of order or one too many is refused', () => {
  assert.deepEqual(decodeBasicConstraints(sequence(boolean(true), smallInteger(0))), { ca: true, pathLen: 0 });
  assert.throws(() => decodeBasicConstraints(sequence(smallInteger(0), boolean(true))), /unexpected fields/);
  assert.throws(() => decodeBasicConstraints(sequence(boolean(true), smallInteger(0), smallInteger(1))), /unexpected fields/);
});

test('a SubjectPublicKeyInfo with a field after the key, or a second algorithm parameter, is refused', () => {
  const [alg, key] = [sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')), bitStringBytes(Buffer.alloc(65, 4))];
  assert.throws(() => decodeSpki(sequence(alg, key, sequence())), /extra fields/);
  assert.throws(() => decodeSpki(sequence(sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7'), oid('1.2.840.10045.3.1.7')), key)), /extra fields/);
});

test('a SAN value with a space or a control character is never written', () => {
  assert.deepEqual(decodeSubjectAltName(subjectAltNameValue(['spiffe://example.org/a'], ['a.example'])), { uris: ['spiffe://example.org/a'], dnsNames: ['a.example'], others: 0 });
  for (const bad of ['spiffe://example.org/a b', 'spiffe://example.org/a\tb', 'spiffe://example.org/\x7f', '']) {
    assert.throws(() => subjectAltNameValue([bad], []), /printable ASCII/, JSON.stringify(bad));
    assert.throws(() => subjectAltNameValue([], [bad]), /printable ASCII/, JSON.stringify(bad));
  }
});
