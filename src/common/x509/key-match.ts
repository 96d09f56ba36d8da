import { createPublicKey } from 'node:crypto';
import { ecCurveByOid, Oid } from './algorithms.js';
import { children, expectTag, readBitStringBytes, readOid, readSingle, readSmallInteger, value } from './der-reader.js';
import { importPrivateKey, reusableEcdh } from './keys.js';
import { encodeSpki } from './spki.js';

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
    const curve = readOid(expectTag(algOid, 0x06, 'algorithm')) === Oid.ecPublicKey && params?.tag === 0x06 ? ecCurveByOid(readOid(params)) : undefined;
    if (curve === undefined) return encodeSpki(createPublicKey(importPrivateKey(pkcs8))).equals(spki);

    const [, dT] = children(expectTag(readSingle(value(expectTag(keyT, 0x04, 'privateKey')), 'ECPrivateKey'), 0x30, 'ECPrivateKey'));
    const [spkiAlgT, pointT] = children(expectTag(readSingle(spki, 'SubjectPublicKeyInfo'), 0x30, 'SubjectPublicKeyInfo'));
    const [spkiAlgOid, spkiCurve] = children(expectTag(spkiAlgT, 0x30, 'algorithm'));
    if (readOid(expectTag(spkiAlgOid, 0x06, 'algorithm')) !== Oid.ecPublicKey || spkiCurve?.tag !== 0x06 || readOid(spkiCurve) !== curve.oid) return false;
    const ecdh = reusableEcdh(curve.openssl);
    ecdh.setPrivateKey(value(expectTag(dT, 0x04, 'privateKey')));
    return ecdh.getPublicKey().equals(readBitStringBytes(expectTag(pointT, 0x03, 'subjectPublicKey')));
  } catch {
    return false;
  }
}
