import { createECDH, createPublicKey, type ECDH } from 'node:crypto';
import { Oid } from './algorithms.js';
import { children, expectTag, readBitStringBytes, readOid, readSingle, readSmallInteger, value } from './der-reader.js';
import { importPrivateKey } from './keys.js';
import { encodeSpki } from './spki.js';

/** OpenSSL curve names by OID, for the curves meshid keys use. */
const EC_CURVES = new Map<string, string>([
  ['1.2.840.10045.3.1.7', 'prime256v1'],
  ['1.3.132.0.34', 'secp384r1'],
]);
const generators = new Map<string, ECDH>();

/**
 * Whether the unencrypted PKCS#8 DER private key is the key of the SubjectPublicKeyInfo DER (e.g. a certificate's).
 * For EC keys the public point is recomputed from the private scalar (one scalar multiplication, ~20 µs) and
 * compared with the SPKI's point; importing the PKCS#8 through OpenSSL 3's decoder would cost ~300 µs, which is
 * what an agent restarting with 10,000 cached SVIDs would pay per SVID before serving. Other keys are imported.
 * False for anything malformed.
 */
export function privateKeyMatchesSpki(pkcs8: Buffer, spki: Buffer): boolean {
  try {
    const [versionT, algT, keyT] = children(expectTag(readSingle(pkcs8, 'PrivateKeyInfo'), 0x30, 'PrivateKeyInfo'));
    readSmallInteger(expectTag(versionT, 0x02, 'version'));
    const [algOid, params] = children(expectTag(algT, 0x30, 'privateKeyAlgorithm'));
    const curve = readOid(expectTag(algOid, 0x06, 'algorithm')) === Oid.ecPublicKey && params?.tag === 0x06 ? readOid(params) : undefined;
    const curveName = curve === undefined ? undefined : EC_CURVES.get(curve);
    if (curveName === undefined) return encodeSpki(createPublicKey(importPrivateKey(pkcs8))).equals(spki);

    const [, dT] = children(expectTag(readSingle(value(expectTag(keyT, 0x04, 'privateKey')), 'ECPrivateKey'), 0x30, 'ECPrivateKey'));
    const [spkiAlgT, pointT] = children(expectTag(readSingle(spki, 'SubjectPublicKeyInfo'), 0x30, 'SubjectPublicKeyInfo'));
    const [spkiAlgOid, spkiCurve] = children(expectTag(spkiAlgT, 0x30, 'algorithm'));
    if (readOid(expectTag(spkiAlgOid, 0x06, 'algorithm')) !== Oid.ecPublicKey || spkiCurve?.tag !== 0x06 || readOid(spkiCurve) !== curve) return false;
    let ecdh = generators.get(curveName);
    if (ecdh === undefined) generators.set(curveName, (ecdh = createECDH(curveName)));
    ecdh.setPrivateKey(value(expectTag(dT, 0x04, 'privateKey')));
    return ecdh.getPublicKey().equals(readBitStringBytes(expectTag(pointT, 0x03, 'subjectPublicKey')));
  } catch {
    return false;
  }
}
