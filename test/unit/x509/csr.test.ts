import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { isMeshidError } from '../../../src/common/errors.js';
import { createCsr, parseCsr } from '../../../src/common/x509/csr.js';
import { encodeLength, sequence } from '../../../src/common/x509/der.js';
import { children, raw, readSingle } from '../../../src/common/x509/der-reader.js';
import { generateKeyPair, spkiDer, type KeyType } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { opensslMakeCsr, opensslReqVerify } from '../../support/openssl.js';
import { DAY, makePki, T0, TD } from './pki-fixture.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const isInvalid = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'invalid_argument') && pattern.test(err.message);

for (const type of ['ec-p256', 'ec-p384', 'rsa-2048'] as KeyType[]) {
  test(`${type}: createCsr makes a request openssl verifies and parseCsr returns its key`, async () => {
    const { privateKey, publicKey } = generateKeyPair(type);
    const csr = await createCsr(privateKey, publicKey);
    const r = opensslReqVerify(csr);
    assert.ok(r.ok, r.output);
    assert.match(r.output, /verify OK/i);
    const parsed = parseCsr(csr);
    assert.ok(parsed.publicKey.equals(publicKey));
    assert.deepEqual(parsed.spkiDer, spkiDer(publicKey));
    assert.deepEqual(parsed.spkiDer, publicKey.export({ type: 'spki', format: 'der' }), 'the key as OpenSSL encodes it');
  });

  test(`${type}: a CSR with a flipped signature byte is rejected`, async () => {
    const { privateKey, publicKey } = generateKeyPair(type);
    const csr = Buffer.from(await createCsr(privateKey, publicKey));
    csr[csr.length - 6]! ^= 0x01;
    assert.throws(() => parseCsr(csr), isInvalid(/^CSR signature does not verify$/));
  });
}

test('a CSR whose public key was swapped for another key is rejected', async () => {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  const other = spkiDer(generateKeyPair('ec-p256').publicKey);
  const swapped = Buffer.from(csr);
  const at = swapped.indexOf(spkiDer(publicKey));
  assert.ok(at > 0);
  other.copy(swapped, at);
  assert.throws(() => parseCsr(swapped), isInvalid(/^CSR signature does not verify$/));
});

test('an openssl-made CSR parses, and its subject and SAN never reach the certificate', async () => {
  const { csrDer, keyPem } = opensslMakeCsr();
  const { publicKey } = parseCsr(csrDer);
  assert.ok(publicKey.equals(createPublicKey(keyPem)));
  const { east } = await makePki('ec-p256');
  const leaf = new X509Certificate(
    new LeafSigner(east.der, east.privateKey).sign({ publicKey, spiffeId: `spiffe://${TD}/web`, notBefore: T0, notAfter: T0 + DAY }),
  );
  assert.equal(leaf.subjectAltName, `URI:spiffe://${TD}/web`);
  assert.equal(leaf.subject, 'O=meshid');
});

test('garbage, truncated and unsupported CSRs are refused with invalid_argument', async () => {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  assert.throws(() => parseCsr(Buffer.alloc(0)), isInvalid(/^malformed CSR/));
  assert.throws(() => parseCsr(Buffer.from('not a csr')), isInvalid(/^malformed CSR/));
  assert.throws(() => parseCsr(csr.subarray(0, csr.length - 3)), isInvalid(/^malformed CSR/));
  assert.throws(() => parseCsr(Buffer.concat([csr, Buffer.from([0])])), isInvalid(/^malformed CSR: CSR has 1 trailing bytes/));
  assert.throws(() => parseCsr(opensslMakeCsr('ed25519').csrDer), isInvalid(/the CSR's key \(ed25519\) is not accepted/));
});

test('a CSR key outside EC P-256/P-384 and RSA 2048-4096 with exponent 65537 is refused before its signature is verified', async () => {
  const csrOf = async (modulusLength: number, publicExponent = 65537) => {
    const k = jobFreeKeyPair('rsa', { modulusLength, publicExponent });
    return createCsr(k.privateKey, k.publicKey);
  };
  assert.equal(parseCsr(await csrOf(4096)).publicKey.asymmetricKeyDetails?.modulusLength, 4096);
  // A huge exponent makes every verification slow: what a hostile agent would send a thousand of per call.
  const slow = await csrOf(2048, 0x7fffffff);
  assert.throws(() => parseCsr(slow), isInvalid(/the CSR's key \(RSA-2048 with exponent 2147483647\) is not accepted/));
  assert.throws(() => parseCsr(opensslMakeCsr('ec-p521').csrDer), isInvalid(/EC secp521r1\) is not accepted/));
});

test('createCsr refuses a public key that is not the private key\'s', async () => {
  const ec = generateKeyPair('ec-p256');
  const rsa = generateKeyPair('rsa-2048');
  for (const [privateKey, publicKey, what] of [
    [ec.privateKey, generateKeyPair('ec-p256').publicKey, 'another P-256 key'],
    [ec.privateKey, generateKeyPair('ec-p384').publicKey, 'a P-384 key'],
    [ec.privateKey, rsa.publicKey, 'an RSA key'],
    [rsa.privateKey, ec.publicKey, 'an EC key for an RSA one'],
    [ec.publicKey, ec.publicKey, 'a public key as the private one'],
  ] as const) {
    await assert.rejects(createCsr(privateKey, publicKey), isInvalid(/does not match its public key/), what);
  }
  const csr = await createCsr(ec.privateKey, ec.privateKey);
  assert.ok(opensslReqVerify(csr).ok, 'the private key standing for its public half is its match');
});

test('a CSR with an OBJECT IDENTIFIER too long to be real is refused as malformed', async () => {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const good = await createCsr(privateKey, publicKey);
  // The signatureAlgorithm's OID swapped for one arc of 4 KiB, within the CSR size limit (at 256 KiB, decoded
  // naively, it took seconds of BigInt shifts).
  const [info, , sig] = children(readSingle(good, 'csr'));
  const arc = Buffer.alloc(4096, 0x81);
  arc[arc.length - 1] = 0x01;
  const evil = sequence(raw(info!), sequence(Buffer.concat([Buffer.from([0x06]), encodeLength(arc.length), arc])), raw(sig!));
  assert.throws(() => parseCsr(evil), (err: unknown) => isMeshidError(err, 'invalid_argument') && /OBJECT IDENTIFIER of 4096 bytes/.test((err as Error).message));
});

test('a CSR over 16 KiB is refused before it is parsed', () => {
  const padded = Buffer.concat([Buffer.from([0x30, 0x83, 0x00, 0x40, 0x00]), Buffer.alloc(0x4000)]);
  assert.throws(() => parseCsr(padded), (err: unknown) => isMeshidError(err, 'invalid_argument') && /malformed CSR: 16389 bytes, at most 16384/.test((err as Error).message));
});

test('a CSR of another version than 0 (v1) is refused as malformed, before its signature is looked at', async () => {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = Buffer.from(await createCsr(privateKey, publicKey));
  const info = children(readSingle(csr, 'csr'))[0]!;
  const version = children(info)[0]!;
  assert.deepEqual(raw(version), Buffer.from([0x02, 0x01, 0x00]));
  for (const v of [1, 2]) {
    const other = Buffer.from(csr);
    other[version.valueStart] = v;
    assert.throws(() => parseCsr(other), isInvalid(/^malformed CSR: version must be 0 \(v1\)$/), `version ${v}`);
  }
});

test('the CSR size limit is 16,384 bytes exactly: that many are parsed, one more is refused for its size', () => {
  const ofSize = (n: number) => Buffer.concat([Buffer.from([0x30, 0x82]), Buffer.from([((n - 4) >> 8) & 0xff, (n - 4) & 0xff]), Buffer.alloc(n - 4)]);
  assert.throws(() => parseCsr(ofSize(16_385)), isInvalid(/^malformed CSR: 16385 bytes, at most 16384$/));
  assert.throws(() => parseCsr(ofSize(16_384)), (err: unknown) => isMeshidError(err, 'invalid_argument') && !/bytes, at most/.test((err as Error).message) && /malformed CSR/.test((err as Error).message));
});
