import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { isMeshidError } from '../../../src/common/errors.js';
import { certificatesToPem, pemToDerList, splitConcatenatedDer, toPem } from '../../../src/common/x509/pem.js';
import { makePki } from './pki-fixture.js';

const isInvalid = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'invalid_argument') && pattern.test(err.message);

test('PEM blocks wrap base64 at 64 columns and OpenSSL reads them back', async () => {
  const { root, east } = await makePki('ec-p256');
  const pem = toPem('CERTIFICATE', root.der);
  const lines = pem.trimEnd().split('\n');
  assert.equal(lines[0], '-----BEGIN CERTIFICATE-----');
  assert.equal(lines.at(-1), '-----END CERTIFICATE-----');
  assert.ok(lines.slice(1, -1).every((l) => l.length <= 64));
  assert.ok(lines.slice(1, -2).every((l) => l.length === 64));
  assert.deepEqual(new X509Certificate(pem).raw, root.der);
  assert.deepEqual(pemToDerList(certificatesToPem([east.der, root.der])), [east.der, root.der]);
});

test('text around PEM blocks is ignored and other labels can be read on request', async () => {
  const { root } = await makePki('ec-p256');
  const withText = `subject=O = meshid\n${toPem('CERTIFICATE', root.der)}trailing note\n`;
  assert.deepEqual(pemToDerList(withText), [root.der]);
  assert.deepEqual(pemToDerList(toPem('PRIVATE KEY', Buffer.from([1, 2, 3])), 'PRIVATE KEY'), [Buffer.from([1, 2, 3])]);
});

test('malformed PEM is refused with a message saying what is wrong', async () => {
  const { root } = await makePki('ec-p256');
  const good = toPem('CERTIFICATE', root.der);
  assert.throws(() => pemToDerList(''), isInvalid(/no PEM "CERTIFICATE" block found/));
  assert.throws(() => pemToDerList('just some text'), isInvalid(/no PEM "CERTIFICATE" block/));
  assert.throws(() => pemToDerList('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n'), isInvalid(/valid base64/));
  assert.throws(() => pemToDerList(good.replace('END CERTIFICATE', 'END PRIVATE KEY')), isInvalid(/does not match END/));
  assert.throws(() => pemToDerList(toPem('PRIVATE KEY', root.der)), isInvalid(/is a "PRIVATE KEY", expected "CERTIFICATE"/));
  assert.throws(() => pemToDerList(good + '-----BEGIN CERTIFICATE-----\nAAAA\n'), isInvalid(/no matching END/));
  assert.throws(() => pemToDerList(toPem('CERTIFICATE', Buffer.from('not der at all'))), isInvalid(/not a DER certificate/));
  assert.throws(() => pemToDerList(toPem('CERTIFICATE', root.der.subarray(0, 100))), isInvalid(/block 1 is not a DER certificate/));
});

test('concatenated DER splits back into its certificates', async () => {
  const { root, east, west } = await makePki('ec-p384');
  const bundle = Buffer.concat([east.der, west.der, root.der]);
  assert.deepEqual(splitConcatenatedDer(bundle), [east.der, west.der, root.der]);
  assert.deepEqual(splitConcatenatedDer(Buffer.alloc(0)), []);
});

test('concatenated DER with truncation, trailing bytes or a non-SEQUENCE is refused', async () => {
  const { root, east } = await makePki('ec-p256');
  const bundle = Buffer.concat([east.der, root.der]);
  assert.throws(() => splitConcatenatedDer(bundle.subarray(0, bundle.length - 1)), isInvalid(/element 2/));
  assert.throws(() => splitConcatenatedDer(Buffer.concat([bundle, Buffer.from([0x30])])), isInvalid(/element 3/));
  assert.throws(() => splitConcatenatedDer(Buffer.from('0401ff', 'hex')), isInvalid(/expected a SEQUENCE/));
  assert.throws(() => splitConcatenatedDer(Buffer.from(toPem('CERTIFICATE', root.der))), isInvalid(/byte 0/));
});

test('base64 missing its padding (a length not a multiple of 4) is refused, not decoded leniently', () => {
  assert.deepEqual(pemToDerList('-----BEGIN TEST-----\nQUJDRA==\n-----END TEST-----\n', 'TEST'), [Buffer.from('ABCD')]);
  assert.throws(() => pemToDerList('-----BEGIN TEST-----\nQUJDRA\n-----END TEST-----\n', 'TEST'), isInvalid(/PEM block 1 \(TEST\) does not hold valid base64/));
  assert.throws(() => pemToDerList('-----BEGIN TEST-----\nQUJDR\n-----END TEST-----\n', 'TEST'), isInvalid(/does not hold valid base64/));
});
