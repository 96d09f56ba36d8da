import type { KeyObject } from 'node:crypto';
import { EC_CURVES, Oid } from './algorithms.js';
import { bitStringBytes, explicit, octetString, oid, sequence, smallInteger } from './der.js';

/** An EC private key's PKCS#8 DER and its public key's SubjectPublicKeyInfo DER. */
export interface EcKeyDer {
  readonly pkcs8: Buffer;
  readonly spki: Buffer;
}

/**
 * Both DER forms of an EC private key on a named curve, assembled from one JWK export (as encodeSpki does for the
 * SPKI): `key.export({ type: 'pkcs8', format: 'der' })` and the SPKI export go through OpenSSL 3's generic encoder
 * (~30 µs a key together, with fresh keys), which an agent paid for each of its 10,000 SVID keys; the JWK export costs
 * a few µs and the DER around it is fixed. Byte-identical to OpenSSL's: PrivateKeyInfo v0, id-ecPublicKey with the
 * named curve, an RFC 5915 ECPrivateKey v1 with the scalar at the curve's full size, no parameters of its own and the
 * uncompressed public point; the unit tests compare the two. Undefined for any other key (the caller exports it).
 */
export function ecKeyDer(privateKey: KeyObject): EcKeyDer | undefined {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ec') return undefined;
  const jwk = privateKey.export({ format: 'jwk' });
  const curve = ALGORITHMS.get(jwk.crv ?? '');
  if (curve === undefined || jwk.d === undefined || jwk.x === undefined || jwk.y === undefined) return undefined;
  const d = Buffer.from(jwk.d, 'base64url');
  const point = Buffer.concat([UNCOMPRESSED, Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
  if (d.length !== curve.size || point.length !== 1 + 2 * curve.size) return undefined;
  const publicKey = bitStringBytes(point);
  const ecPrivateKey = sequence(VERSION_1, octetString(d), explicit(1, publicKey));
  return { pkcs8: sequence(VERSION_0, curve.algorithm, octetString(ecPrivateKey)), spki: sequence(curve.algorithm, publicKey) };
}

const UNCOMPRESSED = Buffer.from([0x04]);
const VERSION_0 = smallInteger(0);
const VERSION_1 = smallInteger(1);
const ALGORITHMS = new Map(EC_CURVES.map((c) => [c.jwk as string, { size: c.size, algorithm: sequence(oid(Oid.ecPublicKey), oid(c.oid)) }]));
