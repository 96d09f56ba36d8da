import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { isMeshidError } from '../../../src/common/errors.js';
import { checkSubjectPublicKey } from '../../../src/common/x509/algorithms.js';
import {
  exportPkcs8Der,
  exportPkcs8Pem,
  generateKeyPair,
  importPrivateKey,
  keyMatchesCertificate,
  spkiDer,
  type KeyType,
} from '../../../src/common/x509/keys.js';
import { decodeSpki } from '../../../src/common/x509/spki.js';
import { makeRoot } from './pki-fixture.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const KEY_TYPES: KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];

/** The KeyType a key is, read from what OpenSSL reports of it. */
function keyTypeOf(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  return key.asymmetricKeyType === 'rsa' ? `rsa-${d?.modulusLength}` : `ec-${d?.namedCurve === 'prime256v1' ? 'p256' : d?.namedCurve === 'secp384r1' ? 'p384' : d?.namedCurve}`;
}

const isInvalid = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'invalid_argument') && pattern.test(err.message);

for (const type of KEY_TYPES) {
  test(`${type}: generated keys report their type and survive PKCS#8 DER and PEM round trips`, () => {
    const { privateKey, publicKey } = generateKeyPair(type);
    assert.equal(keyTypeOf(privateKey), type);
    assert.equal(keyTypeOf(publicKey), type);
    const fromDer = importPrivateKey(exportPkcs8Der(privateKey));
    const fromPem = importPrivateKey(exportPkcs8Pem(privateKey));
    const fromPemBuffer = importPrivateKey(Buffer.from(exportPkcs8Pem(privateKey)));
    for (const k of [fromDer, fromPem, fromPemBuffer]) assert.ok(createPublicKey(k).equals(publicKey));
    assert.match(exportPkcs8Pem(privateKey), /^-----BEGIN PRIVATE KEY-----\n/);
  });

  test(`${type}: the hand-assembled SPKI is byte-identical to OpenSSL's and decodes back to the same key`, () => {
    const { privateKey, publicKey } = generateKeyPair(type);
    const openssl = publicKey.export({ type: 'spki', format: 'der' });
    assert.deepEqual(spkiDer(publicKey), openssl);
    assert.deepEqual(spkiDer(privateKey), openssl);
    assert.ok(decodeSpki(openssl).equals(publicKey));
  });
}

test('SPKI encoding covers P-521 and falls back to OpenSSL for other key types', () => {
  const p521 = jobFreeKeyPair('ec', { namedCurve: 'secp521r1' }).publicKey;
  assert.deepEqual(spkiDer(p521), p521.export({ type: 'spki', format: 'der' }));
  assert.ok(decodeSpki(spkiDer(p521)).equals(p521));
  const ed = jobFreeKeyPair('ed25519').publicKey;
  assert.deepEqual(spkiDer(ed), ed.export({ type: 'spki', format: 'der' }));
  assert.ok(decodeSpki(spkiDer(ed)).equals(ed));
});

test('an EC point that is not on its curve is refused when decoding an SPKI', () => {
  const spki = Buffer.from(spkiDer(generateKeyPair('ec-p256').publicKey));
  spki[spki.length - 1]! ^= 0x01;
  // The point check (OpenSSL's, on the JWK import) refuses it, not the DER reading: any throw would also pass for a
  // decoder that failed on every EC key.
  assert.throws(() => decodeSpki(spki), { code: 'ERR_CRYPTO_INVALID_JWK', message: 'Invalid JWK EC key' });
  spki[spki.length - 1]! ^= 0x01;
  assert.equal(decodeSpki(spki).asymmetricKeyDetails?.namedCurve, 'prime256v1', 'the same SPKI with the point on the curve decodes');
});

test('SEC1 and PKCS#1 PEM keys import', () => {
  const ec = generateKeyPair('ec-p256').privateKey;
  const rsa = generateKeyPair('rsa-2048').privateKey;
  assert.equal(keyTypeOf(importPrivateKey(ec.export({ type: 'sec1', format: 'pem' }).toString())), 'ec-p256');
  assert.equal(keyTypeOf(importPrivateKey(rsa.export({ type: 'pkcs1', format: 'pem' }).toString())), 'rsa-2048');
});

test('garbage, encrypted and unsupported keys are refused with a clear invalid_argument', () => {
  assert.throws(() => importPrivateKey('hello'), isInvalid(/no private key found/));
  assert.throws(() => importPrivateKey(Buffer.from([1, 2, 3])), isInvalid(/cannot be parsed \(expected PKCS#8 DER\)/));
  assert.throws(() => importPrivateKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), isInvalid(/cannot be parsed \(PEM\)/));
  const encrypted = generateKeyPair('ec-p256').privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }).toString();
  assert.throws(() => importPrivateKey(encrypted), isInvalid(/encrypted private keys are not supported/));
  const ed = jobFreeKeyPair('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  assert.throws(() => importPrivateKey(ed), isInvalid(/ed25519 private keys are not supported/));
});

test('a key of a type meshid does not sign with is refused naming exactly the usable keys, curves and sizes included', () => {
  const ed = jobFreeKeyPair('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  assert.throws(
    () => importPrivateKey(ed),
    isInvalid(/^ed25519 private keys are not supported: use an EC key on P-256, P-384 or P-521, or an RSA key of 2048 bits or more$/),
  );
});

test('keyMatchesCertificate tells the certified key from any other', async () => {
  const root = await makeRoot('ec-p256');
  assert.equal(keyMatchesCertificate(root.privateKey, root.der), true);
  assert.equal(keyMatchesCertificate(generateKeyPair('ec-p256').privateKey, root.der), false);
  assert.equal(keyMatchesCertificate(generateKeyPair('rsa-2048').privateKey, root.der), false);
  assert.throws(() => keyMatchesCertificate(root.privateKey, Buffer.from('nope')), isInvalid(/malformed certificate/));
});

test('ec-p256: 2,000 generated keys each sign and verify, with the private scalar at its full 32 bytes', () => {
  for (let i = 0; i < 2000; i++) {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    assert.equal(Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url').length, 32);
    const data = Buffer.from(`message ${i}`);
    assert.ok(verify('sha256', data, publicKey, sign('sha256', data, privateKey)), `key ${i} does not verify its own signature`);
  }
});

test('generating and exporting 30,000 keys in a row does not deadlock (Node 20 keygen-job mutex taken by the GC)', async () => {
  // With generateKeyPairSync's KeyObjects this loop hangs within ~20,000 keys on Node 20; run in a child so a hang
  // fails this test instead of the whole run.
  const script = `
    const { generateKeyPair, spkiDer, exportPkcs8Der } = await import(${JSON.stringify(new URL('../../../src/common/x509/keys.js', import.meta.url).href)});
    for (let i = 0; i < 30000; i++) { const k = generateKeyPair('ec-p256'); spkiDer(k.publicKey); exportPkcs8Der(k.privateKey); }
    process.stdout.write('done');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  assert.equal(out, 'done', `the key generation loop did not finish (exit ${code}): deadlocked`);
});

test('a subject key on a curve SVIDs do not take is refused naming the three curves they do, P-521 among them', () => {
  assert.deepEqual(checkSubjectPublicKey(jobFreeKeyPair('ec', { namedCurve: 'P-521' }).publicKey), { isRsa: false });
  assert.throws(() => checkSubjectPublicKey(jobFreeKeyPair('ec', { namedCurve: 'secp256k1' }).publicKey), {
    message: 'EC curve secp256k1 is not accepted; use P-256, P-384 or P-521',
  });
  assert.throws(() => checkSubjectPublicKey(jobFreeKeyPair('ed25519').publicKey), {
    message: 'ed25519 public keys are not accepted in X.509-SVIDs; use EC P-256, P-384, P-521 or RSA >= 2048',
  });
});
