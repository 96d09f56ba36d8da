import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { bitStringBytes, nullValue, oid, sequence, unsignedInteger } from './der.js';
import { children, DerError, expectTag, readBitStringBytes, readOid, readSingle, value } from './der-reader.js';
import { EC_CURVES, ecCurveByOid, Oid } from './algorithms.js';

/**
 * SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7) of a key, assembled from its JWK form. On Node 20 with OpenSSL 3,
 * `key.export({ type: 'spki', format: 'der' })` goes through OpenSSL's generic encoder and costs ~90 µs, more than an
 * ECDSA P-256 signature; the JWK export costs ~3 µs and the DER around it is fixed. The output is byte-identical to
 * OpenSSL's (named curve, uncompressed point; rsaEncryption with NULL parameters), which the unit tests check. Keys
 * of other types fall back to OpenSSL's encoder.
 */
export function encodeSpki(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const type = pub.asymmetricKeyType;
  if (type === 'ec') {
    const jwk = pub.export({ format: 'jwk' });
    const curve = CURVES[jwk.crv ?? ''];
    if (curve !== undefined && jwk.x !== undefined && jwk.y !== undefined) {
      const point = Buffer.concat([UNCOMPRESSED, Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
      return sequence(curve, bitStringBytes(point));
    }
  } else if (type === 'rsa') {
    const jwk = pub.export({ format: 'jwk' });
    if (jwk.n !== undefined && jwk.e !== undefined) {
      const rsaPublicKey = sequence(unsignedInteger(Buffer.from(jwk.n, 'base64url')), unsignedInteger(Buffer.from(jwk.e, 'base64url')));
      return sequence(RSA_ALGORITHM, bitStringBytes(rsaPublicKey));
    }
  }
  return pub.export({ type: 'spki', format: 'der' });
}

/**
 * The public key in a SubjectPublicKeyInfo DER. The inverse trick of encodeSpki: OpenSSL 3's DER decoder costs ~90 µs
 * where a JWK import costs ~50 µs (nearly all of it OpenSSL's public-key check, a full scalar multiplication, which
 * every import route in Node 20 performs), so EC keys on named curves with uncompressed points and RSA keys are read
 * here and imported as JWK. The JWK import still validates the key (an EC point must lie on its curve and have the
 * group's order). Anything else goes to OpenSSL's decoder. Throws DerError or node's error on malformed input;
 * callers say what was malformed.
 */
export function decodeSpki(spki: Buffer): KeyObject {
  const [algT, keyT, ...rest] = children(expectTag(readSingle(spki, 'SubjectPublicKeyInfo'), 0x30, 'SubjectPublicKeyInfo'));
  const [algOidT, paramsT, ...moreParams] = children(expectTag(algT, 0x30, 'SubjectPublicKeyInfo algorithm'));
  const keyBytes = readBitStringBytes(expectTag(keyT, 0x03, 'subjectPublicKey'));
  if (rest.length > 0 || moreParams.length > 0) throw new DerError('SubjectPublicKeyInfo has extra fields');
  const algorithm = readOid(expectTag(algOidT, 0x06, 'algorithm OID'));
  let jwk: JsonWebKey | undefined;
  if (algorithm === Oid.ecPublicKey && paramsT?.tag === 0x06) {
    const curve = ecCurveByOid(readOid(paramsT));
    if (curve !== undefined && keyBytes.length === 1 + 2 * curve.size && keyBytes[0] === 0x04) {
      jwk = {
        kty: 'EC',
        crv: curve.jwk,
        x: keyBytes.subarray(1, 1 + curve.size).toString('base64url'),
        y: keyBytes.subarray(1 + curve.size).toString('base64url'),
      };
    }
  } else if (algorithm === Oid.rsaEncryption && paramsT?.tag === 0x05) {
    const [n, e, ...extra] = children(expectTag(readSingle(keyBytes, 'RSAPublicKey'), 0x30, 'RSAPublicKey'));
    if (extra.length > 0) throw new DerError('RSAPublicKey has extra fields');
    jwk = { kty: 'RSA', n: magnitude(expectTag(n, 0x02, 'modulus')), e: magnitude(expectTag(e, 0x02, 'publicExponent')) };
  }
  if (jwk !== undefined) return createPublicKey({ key: jwk, format: 'jwk' });
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** A positive INTEGER's magnitude as base64url, for JWK. */
function magnitude(t: ReturnType<typeof readSingle>): string {
  const v = value(t);
  if (v.length === 0 || v[0]! & 0x80) throw new DerError('RSA key INTEGERs must be positive');
  return (v[0] === 0 ? v.subarray(1) : v).toString('base64url');
}

const UNCOMPRESSED = Buffer.from([0x04]);
/** AlgorithmIdentifier { id-ecPublicKey, namedCurve } per JWK curve name (RFC 5480 §2.1.1). */
const CURVES: Record<string, Buffer> = Object.fromEntries(EC_CURVES.map((c) => [c.jwk, sequence(oid(Oid.ecPublicKey), oid(c.oid))]));
const RSA_ALGORITHM = sequence(oid(Oid.rsaEncryption), nullValue());
