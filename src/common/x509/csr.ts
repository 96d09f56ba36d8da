import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { invalidArgument } from '../errors.js';
import { signatureAlgorithmFor, verificationAlgorithm } from './algorithms.js';
import { bitStringBytes, implicitConstructed, sequence, smallInteger } from './der.js';
import { children, expectTag, raw, readBitStringBytes, readOid, readSingle, readSmallInteger, type Tlv } from './der-reader.js';
import { spkiDer as spkiOf } from './keys.js';
import { decodeSpki } from './spki.js';

/**
 * PKCS#10 certification requests (RFC 2986). Agents send one to prove possession of the key they want certified;
 * the server takes only the public key from it. The subject and any requested extensions are ignored by design: the
 * server decides the identity from its registration entries, never from what the requester asks for.
 */

/** An empty subject Name: the request carries no identity claim. */
const EMPTY_NAME = sequence();
/** attributes [0] IMPLICIT SET OF Attribute, empty (RFC 2986 §4.1 requires the field, not any content). */
const NO_ATTRIBUTES = implicitConstructed(0);

/**
 * Creates a DER PKCS#10 request for the key pair, signed with the algorithm matching the key (as for certificates).
 * Async so callers need not change when keys move to a slower backend.
 */
export async function createCsr(privateKey: KeyObject, publicKey: KeyObject): Promise<Buffer> {
  const spki = spkiOf(publicKey);
  if (!isPublicHalf(publicKey, privateKey)) throw invalidArgument('the CSR private key does not match its public key');
  const algorithm = signatureAlgorithmFor(privateKey);
  const info = sequence(smallInteger(0), EMPTY_NAME, spki, NO_ATTRIBUTES);
  const signature = sign(algorithm.digest, info, { key: privateKey, dsaEncoding: 'der' });
  return sequence(info, algorithm.identifierDer, bitStringBytes(signature));
}

/**
 * Whether `publicKey` is `privateKey`'s public half. Compared by OpenSSL (EVP_PKEY_eq) rather than by encoding the
 * private key's SPKI too: that encoding was a second JWK export per key, ~2-4 times the comparison, and an agent makes
 * a CSR for each of its SVID keys. A key OpenSSL cannot derive or compare is no match.
 */
function isPublicHalf(publicKey: KeyObject, privateKey: KeyObject): boolean {
  try {
    return createPublicKey(privateKey).equals(publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey);
  } catch {
    return false;
  }
}

export interface ParsedCsr {
  publicKey: KeyObject;
  /** The requested key's SubjectPublicKeyInfo, as sent (a copy, not a view into the input). */
  spkiDer: Buffer;
}

/**
 * A CSR of a supported key (an RSA-4096 one is about 1.1 KB) fits many times over; anything longer is a peer making
 * the server parse for its own sake.
 */
export const MAX_CSR_BYTES = 16 * 1024;

/** A request whose structure and key were checked, and whose self-signature has yet to be. */
export interface UnverifiedCsr extends ParsedCsr {
  /** Throws MeshidError(invalid_argument) "CSR signature does not verify" unless the key made the signature. */
  verifySignature(): void;
}

/**
 * Parses a DER PKCS#10 request and verifies its self-signature (ECDSA or RSA PKCS#1 v1.5 with SHA-256/384/512).
 * Throws MeshidError(invalid_argument): "malformed CSR: …" for anything that does not parse,
 * "unsupported CSR signature algorithm …", or "CSR signature does not verify".
 */
export function parseCsr(der: Buffer): ParsedCsr {
  const csr = readCsr(der);
  csr.verifySignature();
  return { publicKey: csr.publicKey, spkiDer: csr.spkiDer };
}

/**
 * The cheap half of parseCsr: the structure, the key and the algorithm, without the signature check. The server's
 * signing admission charges by key type (signing-limits.ts) between the two halves, because the check is what a key
 * type makes expensive.
 */
export function readCsr(der: Buffer): UnverifiedCsr {
  let info: Tlv;
  let spkiT: Tlv;
  let sigOid: string;
  let signature: Buffer;
  try {
    if (!Buffer.isBuffer(der) || der.length === 0) throw new Error('empty input');
    if (der.length > MAX_CSR_BYTES) throw new Error(`${der.length} bytes, at most ${MAX_CSR_BYTES}`);
    const [infoT, algT, sigT, ...extra] = children(expectTag(readSingle(der, 'CSR'), 0x30, 'CertificationRequest'));
    if (extra.length > 0) throw new Error('CertificationRequest has extra fields');
    info = expectTag(infoT, 0x30, 'certificationRequestInfo');
    const [versionT, subjectT, spki, attributesT, ...more] = children(info);
    if (readSmallInteger(expectTag(versionT, 0x02, 'version')) !== 0) throw new Error('version must be 0 (v1)');
    expectTag(subjectT, 0x30, 'subject');
    spkiT = expectTag(spki, 0x30, 'subjectPKInfo');
    if (attributesT !== undefined) expectTag(attributesT, 0xa0, 'attributes');
    if (more.length > 0) throw new Error('certificationRequestInfo has extra fields');
    sigOid = readOid(expectTag(children(expectTag(algT, 0x30, 'signatureAlgorithm'))[0], 0x06, 'signatureAlgorithm OID'));
    signature = readBitStringBytes(expectTag(sigT, 0x03, 'signature'));
  } catch (err) {
    throw invalidArgument(`malformed CSR: ${(err as Error).message}`, err);
  }
  const spkiDer = Buffer.from(raw(spkiT));
  let publicKey: KeyObject;
  try {
    publicKey = decodeSpki(spkiDer);
  } catch (err) {
    throw invalidArgument('malformed CSR: the public key does not parse', err);
  }
  checkCsrKey(publicKey);
  const alg = verificationAlgorithm(sigOid);
  if (alg === undefined) throw invalidArgument(`unsupported CSR signature algorithm ${sigOid} (use ECDSA or RSA PKCS#1 v1.5 with SHA-2)`);
  if (publicKey.asymmetricKeyType !== alg.keyType) {
    throw invalidArgument(`malformed CSR: a ${publicKey.asymmetricKeyType ?? 'unknown'} key cannot make a ${sigOid} signature`);
  }
  const signed = raw(info);
  return {
    publicKey,
    spkiDer,
    verifySignature(): void {
      let ok: boolean;
      try {
        ok = verify(alg.digest, signed, { key: publicKey, dsaEncoding: 'der' }, signature);
      } catch {
        ok = false;
      }
      if (!ok) throw invalidArgument('CSR signature does not verify');
    },
  };
}

const CSR_CURVES = new Set(['prime256v1', 'secp384r1']);
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;

/**
 * The keys an SVID may certify: EC P-256 or P-384, RSA of 2048 to 4096 bits with exponent 65537 (what SPIRE accepts).
 * Checked before the signature, because verifying is what a hostile key makes expensive: an RSA key with a
 * 3072-bit exponent costs ~30 times a P-256 verification, and a batch carries up to 1,000 CSRs.
 */
function checkCsrKey(key: KeyObject): void {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && CSR_CURVES.has(details?.namedCurve ?? '')) return;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS && details?.publicExponent === 65537n) return;
  }
  const what = key.asymmetricKeyType === 'ec' ? `EC ${details?.namedCurve ?? '?'}` : key.asymmetricKeyType === 'rsa'
    ? `RSA-${details?.modulusLength ?? '?'} with exponent ${details?.publicExponent ?? '?'}` : (key.asymmetricKeyType ?? 'unknown');
  throw invalidArgument(`the CSR's key (${what}) is not accepted: use EC P-256 or P-384, or RSA 2048 to 4096 bits with exponent 65537`);
}
