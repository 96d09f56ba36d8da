import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeLength,
  explicit,
  namedBitString,
  oid,
  sequence,
  smallInteger,
  time,
  unsignedInteger,
} from '../../../src/common/x509/der.js';
import { children, readOid, readSingle, readTime, readTlv } from '../../../src/common/x509/der-reader.js';

const hex = (b: Buffer): string => b.toString('hex');

test('lengths use the short form below 128 and minimal long forms above', () => {
  assert.equal(hex(encodeLength(0)), '00');
  assert.equal(hex(encodeLength(127)), '7f');
  assert.equal(hex(encodeLength(128)), '8180');
  assert.equal(hex(encodeLength(255)), '81ff');
  assert.equal(hex(encodeLength(256)), '820100');
  assert.equal(hex(encodeLength(65536)), '83010000');
});

test('OIDs encode to their well-known DER', () => {
  assert.equal(hex(oid('1.2.840.10045.4.3.2')), '06082a8648ce3d040302'); // ecdsa-with-SHA256
  assert.equal(hex(oid('2.5.29.19')), '0603551d13'); // basicConstraints
  assert.equal(hex(oid('1.3.6.1.5.5.7.3.1')), '06082b06010505070301'); // serverAuth
  assert.equal(hex(oid('1.2.840.113549.1.1.11')), '06092a864886f70d01010b');
  assert.equal(readOid(readTlv(oid('1.3.132.0.34'))), '1.3.132.0.34');
  assert.throws(() => oid('1.x.3'), RangeError);
});

test('OIDs decode to dotted form, arcs of any size included', () => {
  // Each decoded by the DER bytes openssl writes for it, not by meshid's encoder alone.
  const decode = (derHex: string): string => readOid(readTlv(Buffer.from(derHex, 'hex')));
  assert.equal(decode('06082a8648ce3d040302'), '1.2.840.10045.4.3.2');
  assert.equal(decode('0603883703'), '2.999.3'); // first subidentifier >= 80 belongs to arc 2
  assert.equal(decode('0601' + '4f'), '1.39');
  // A 2.25 UUID arc (128 bits), past what a Number holds exactly.
  const uuid = '2.25.329800735698586629295641978511506172918';
  assert.equal(decode('06146983f09da7ebcfdee0c7a1a7b2c0948cc8f9d776'), uuid); // openssl asn1parse -genstr OID:<uuid>
  assert.equal(readOid(readTlv(oid(uuid))), uuid);
  assert.equal(decode('06082affffffffffff7f'), `1.2.${2 ** 49 - 1}`); // the longest arc read as a Number
  assert.equal(decode('06092affffffffffffff7f'), `1.2.${2n ** 56n - 1n}`); // the shortest read as a BigInt
  assert.throws(() => decode('0603883783'), /truncated OBJECT IDENTIFIER/);
  assert.throws(() => decode('0600'), /empty OBJECT IDENTIFIER/);
  // A peer's CSR cannot make decoding one OID take seconds: a 256 KiB arc is refused by its length.
  const huge = Buffer.concat([Buffer.from('0683040000', 'hex'), Buffer.alloc(256 * 1024 - 1, 0x81), Buffer.from([0x01])]);
  assert.throws(() => readOid(readTlv(huge)), /OBJECT IDENTIFIER of 262144 bytes \(at most 128\)/);
});

test('INTEGERs are minimal and positive: a 0x00 is prepended only when the top bit is set', () => {
  assert.equal(hex(unsignedInteger(Buffer.from([0x7f]))), '02017f');
  assert.equal(hex(unsignedInteger(Buffer.from([0x80]))), '02020080');
  assert.equal(hex(unsignedInteger(Buffer.from([0x00, 0x00, 0x01]))), '020101');
  assert.equal(hex(unsignedInteger(Buffer.alloc(0))), '020100');
  assert.equal(hex(smallInteger(0)), '020100');
  assert.equal(hex(smallInteger(2)), '020102');
  assert.equal(hex(smallInteger(300)), '0202012c');
});

test('named bit strings drop trailing zero bits as DER requires', () => {
  assert.equal(hex(namedBitString([0])), '03020780'); // digitalSignature
  assert.equal(hex(namedBitString([0, 2])), '030205a0'); // digitalSignature, keyEncipherment
  assert.equal(hex(namedBitString([5, 6])), '03020106'); // keyCertSign, cRLSign
  assert.equal(hex(namedBitString([8])), '0303070080'); // decipherOnly
});

test('times through 2049 are UTCTime and from 2050 GeneralizedTime (RFC 5280 §4.1.2.5)', () => {
  const utc = time(Date.UTC(2049, 11, 31, 23, 59, 59));
  assert.equal(utc[0], 0x17);
  assert.equal(utc.subarray(2).toString('latin1'), '491231235959Z');
  const gen = time(Date.UTC(2050, 0, 1, 0, 0, 0));
  assert.equal(gen[0], 0x18);
  assert.equal(gen.subarray(2).toString('latin1'), '20500101000000Z');
  const old = time(Date.UTC(1950, 0, 1));
  assert.equal(old.subarray(2).toString('latin1'), '500101000000Z');
  const older = time(Date.UTC(1949, 11, 31, 23, 59, 59));
  assert.equal(older[0], 0x18);
});

test('times truncate milliseconds and read back to the encoded instant', () => {
  const ms = Date.UTC(2026, 4, 17, 8, 9, 10) + 999;
  assert.equal(readTime(readTlv(time(ms))), ms - 999);
  for (const t of [Date.UTC(1950, 0, 1), Date.UTC(2049, 11, 31, 23, 59, 59), Date.UTC(2050, 0, 1), Date.UTC(9999, 11, 31)]) {
    assert.equal(readTime(readTlv(time(t))), t);
  }
});

test('the reader walks nested structures and refuses non-DER lengths, truncation and trailing bytes', () => {
  const der = sequence(smallInteger(1), explicit(3, sequence(oid('2.5.29.15'))));
  const kids = children(readSingle(der, 'test'));
  assert.deepEqual(kids.map((k) => k.tag), [0x02, 0xa3]);
  assert.throws(() => readTlv(Buffer.from('3080020100 0000'.replace(/ /g, ''), 'hex')), /indefinite/);
  assert.throws(() => readTlv(Buffer.from('30810300 0000'.replace(/ /g, ''), 'hex')), /non-minimal/);
  assert.throws(() => readTlv(Buffer.from('3005020101', 'hex')), /past its container/);
  assert.throws(() => readSingle(Buffer.concat([der, Buffer.from([0])]), 'test'), /trailing/);
  assert.throws(() => readTlv(Buffer.from([0x30])), /truncated/);
});
