import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type ECDH, type JsonWebKey, type KeyObject } from 'node:crypto';
import { invalidArgument } from '../errors.js';
import { EC_CURVES, type EcCurve } from './algorithms.js';
import { encodeSpki } from './spki.js';

/** The key types meshid generates for its CAs and SVIDs (configuration `ca_key_type`). */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/**
 * Generates a key pair synchronously (P-256 ~70 µs; RSA-2048 tens of milliseconds).
 *
 * Not with generateKeyPairSync's KeyObjects: on Node 20 they share a mutex with the key-generation job that made
 * them, the job's destructor takes that mutex when the GC collects the job, and JWK/DER exports allocate on the V8
 * heap while holding it. A GC during an export of a fresh key therefore deadlocks the whole process (the agent froze
 * mid-way through signing 10,000 SVIDs; a bare keygen + JWK export loop hangs within ~20,000 keys). Keys imported
 * from JWK have no job behind them, so the key material is generated first (ECDH for EC — the same P-256/P-384
 * scalar and point an ECDSA key has —, DER encoded inside the job for RSA) and imported.
 */
export function generateKeyPair(type: KeyType): KeyPair {
  let jwk: JsonWebKey;
  switch (type) {
    case 'ec-p256':
      jwk = ecJwk(EC_CURVES[0]!);
      break;
    case 'ec-p384':
      jwk = ecJwk(EC_CURVES[1]!);
      break;
    case 'rsa-2048': {
      // Encoded inside the generation job, so no exported KeyObject shares its mutex.
      const { privateKey: der } = generateKeyPairSync('rsa', {
        modulusLength: 2048,
        publicExponent: 0x10001,
        publicKeyEncoding: { type: 'spki', format: 'der' },
        privateKeyEncoding: { type: 'pkcs8', format: 'der' },
      });
      const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      return { privateKey, publicKey: createPublicKey(privateKey) };
    }
    default:
      throw invalidArgument(`unknown key type "${String(type)}" (expected ec-p256, ec-p384 or rsa-2048)`);
  }
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * The process's ECDH object for a curve (OpenSSL name). generateKeys() and setPrivateKey() replace its key, so one
 * per curve serves every key generated or checked, and no OpenSSL key object is left per key for the GC.
 */
export function reusableEcdh(curve: string): ECDH {
  let ecdh = ecdhByCurve.get(curve);
  if (ecdh === undefined) ecdhByCurve.set(curve, (ecdh = createECDH(curve)));
  return ecdh;
}
const ecdhByCurve = new Map<string, ECDH>();

function ecJwk(curve: EcCurve): JsonWebKey {
  const ecdh = reusableEcdh(curve.openssl);
  const point = ecdh.generateKeys();
  return {
    kty: 'EC',
    crv: curve.jwk,
    x: point.subarray(1, 1 + curve.size).toString('base64url'),
    y: point.subarray(1 + curve.size).toString('base64url'),
    // getPrivateKey drops leading zero bytes; JWK wants the scalar at full size.
    d: Buffer.concat([Buffer.alloc(curve.size), ecdh.getPrivateKey()]).subarray(-curve.size).toString('base64url'),
  };
}

/** PKCS#8 DER, unencrypted: the form the Workload API serves (`x509_svid_key`, SPEC-NOTES §3). */
export function exportPkcs8Der(key: KeyObject): Buffer {
  if (key.type !== 'private') throw invalidArgument('only a private key can be exported as PKCS#8');
  return key.export({ type: 'pkcs8', format: 'der' });
}

/** PKCS#8 PEM ("PRIVATE KEY"), unencrypted: the form SDS serves and the key store writes. */
export function exportPkcs8Pem(key: KeyObject): string {
  if (key.type !== 'private') throw invalidArgument('only a private key can be exported as PKCS#8');
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** The keys meshid signs with, as the remedy for a key it refuses. */
const USABLE_KEYS = 'use an EC key on P-256, P-384 or P-521, or an RSA key of 2048 bits or more';

/**
 * Parses an unencrypted private key: PEM (PKCS#8 "PRIVATE KEY", SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY")
 * or PKCS#8 DER. Throws MeshidError(invalid_argument) saying what is wrong, never echoing key bytes.
 */
export function importPrivateKey(pemOrDer: string | Buffer): KeyObject {
  const isPem = typeof pemOrDer === 'string' || pemOrDer.subarray(0, 64).toString('latin1').includes('-----BEGIN');
  const text = isPem ? (typeof pemOrDer === 'string' ? pemOrDer : pemOrDer.toString('utf8')) : undefined;
  if (text !== undefined) {
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
      throw invalidArgument('encrypted private keys are not supported: provide the key unencrypted (PKCS#8 PEM)');
    }
    if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(text)) {
      throw invalidArgument('no private key found: expected a PEM "PRIVATE KEY", "EC PRIVATE KEY" or "RSA PRIVATE KEY" block');
    }
  }
  let key: KeyObject;
  try {
    key = text !== undefined ? createPrivateKey(text) : createPrivateKey({ key: pemOrDer as Buffer, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw invalidArgument(`private key cannot be parsed (${text !== undefined ? 'PEM' : 'expected PKCS#8 DER'})`, err);
  }
  if (key.asymmetricKeyType !== 'ec' && key.asymmetricKeyType !== 'rsa') {
    // The exact list the signer takes (upstream-ca's signing-key check): "use EC or RSA" sent an operator on to
    // secp256k1 or RSA-1024, only to be refused again with a different message.
    throw invalidArgument(`${key.asymmetricKeyType ?? 'unknown'} private keys are not supported: ${USABLE_KEYS}`);
  }
  return key;
}

/** The DER SubjectPublicKeyInfo of a public key (or of the public half of a private key). */
export function spkiDer(key: KeyObject): Buffer {
  return encodeSpki(key);
}

/** Whether `privateKey` is the key certified by the DER certificate. Throws invalid_argument if the DER is not one. */
export function keyMatchesCertificate(privateKey: KeyObject, certDer: Buffer): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certDer);
  } catch (err) {
    throw invalidArgument('malformed certificate', err);
  }
  try {
    return cert.checkPrivateKey(privateKey);
  } catch {
    // OpenSSL refuses to compare keys of different types; that is simply "no match".
    return false;
  }
}
