import { constants, sign, verify, type KeyObject } from 'node:crypto';
import { invalidArgument } from '../errors.js';
import { jwkCurve } from './jwk.js';

/** The JWT-SVID `alg` allow-list (SPEC-NOTES §1, §5; JWT-SVID §3). Everything else — none, HS*, EdDSA — is refused. */
export const JWT_SVID_ALGS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
export type JwtSvidAlg = (typeof JWT_SVID_ALGS)[number];

/** RFC 7518 §3.4: ES* signatures are R‖S, each coordinate the curve's full size. */
const EC_ALGS: Record<'ES256' | 'ES384' | 'ES512', { crv: string; hash: string; signatureBytes: number }> = {
  ES256: { crv: 'P-256', hash: 'sha256', signatureBytes: 64 },
  ES384: { crv: 'P-384', hash: 'sha384', signatureBytes: 96 },
  ES512: { crv: 'P-521', hash: 'sha512', signatureBytes: 132 },
};

/** SPEC-NOTES §5: RSA keys for JWT-SVIDs are at least 2048 bits. */
const MIN_RSA_BITS = 2048;

export function isJwtSvidAlg(alg: unknown): alg is JwtSvidAlg {
  return typeof alg === 'string' && (JWT_SVID_ALGS as readonly string[]).includes(alg);
}

function hashOf(alg: JwtSvidAlg): string {
  return `sha${alg.slice(2)}`;
}

function checkRsaSize(key: KeyObject, what: string): void {
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) throw invalidArgument(`${what} is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
}

/**
 * The signing algorithm meshid uses for a key: ES256/ES384/ES512 by curve for EC keys, RS256 for RSA (what SPIRE
 * emits and every validator supports).
 */
export function algForKey(key: KeyObject): JwtSvidAlg {
  if (key.asymmetricKeyType === 'rsa') {
    checkRsaSize(key, 'the JWT signing key');
    return 'RS256';
  }
  const crv = jwkCurve(key);
  const found = (Object.keys(EC_ALGS) as Array<keyof typeof EC_ALGS>).find((alg) => EC_ALGS[alg].crv === crv);
  if (found === undefined) {
    throw invalidArgument(`unsupported JWT signing key: ${key.asymmetricKeyType ?? 'unknown'} (use EC P-256/384/521 or RSA)`);
  }
  return found;
}

/** Throws unless `key` is the kind of key `alg` needs (an RS256 token must not be checked with an EC key, etc.). */
function checkKeyFits(alg: JwtSvidAlg, key: KeyObject): void {
  if (alg.startsWith('ES')) {
    const want = EC_ALGS[alg as keyof typeof EC_ALGS].crv;
    if (jwkCurve(key) !== want) throw invalidArgument(`token algorithm ${alg} needs an EC ${want} key, but the key with this kid is not one`);
    return;
  }
  if (key.asymmetricKeyType !== 'rsa') throw invalidArgument(`token algorithm ${alg} needs an RSA key, but the key with this kid is not one`);
  checkRsaSize(key, 'the key with this kid');
}

/**
 * RFC 7518 §3.5: PSS with MGF1 over the same hash; signed with a salt as long as the hash output. Verified with the
 * salt length read from the signature, as go-jose (SPIRE, go-spiffe) and golang-jwt verify: a PS* token that the
 * validators of SPIRE and go-spiffe accept (from an issuer signing with Go's PSSSaltLengthAuto, the longest salt) is
 * not refused here alone; the salt length adds nothing to what a verified signature proves.
 */
function rsaPadding(alg: JwtSvidAlg, use: 'sign' | 'verify'): { padding: number; saltLength?: number } {
  if (!alg.startsWith('PS')) return { padding: constants.RSA_PKCS1_PADDING };
  return { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: use === 'sign' ? Number(alg.slice(2)) / 8 : constants.RSA_PSS_SALTLEN_AUTO };
}

/** Signs a JWS signing input; ES* signatures come out as raw R‖S (`ieee-p1363`), never DER. */
export function jwsSign(alg: JwtSvidAlg, privateKey: KeyObject, signingInput: string): Buffer {
  const data = Buffer.from(signingInput, 'ascii');
  if (alg.startsWith('ES')) return sign(hashOf(alg), data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return sign(hashOf(alg), data, { key: privateKey, ...rsaPadding(alg, 'sign') });
}

/**
 * Verifies a JWS signature. The key must fit the algorithm; an ES* signature must be exactly the R‖S length, which
 * also keeps DER-encoded signatures out.
 */
export function jwsVerify(alg: JwtSvidAlg, publicKey: KeyObject, signingInput: string, signature: Buffer): boolean {
  checkKeyFits(alg, publicKey);
  const data = Buffer.from(signingInput, 'ascii');
  try {
    if (alg.startsWith('ES')) {
      if (signature.length !== EC_ALGS[alg as keyof typeof EC_ALGS].signatureBytes) return false;
      return verify(hashOf(alg), data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
    }
    return verify(hashOf(alg), data, { key: publicKey, ...rsaPadding(alg, 'verify') }, signature);
  } catch {
    // OpenSSL throws on some malformed signatures (e.g. longer than the modulus); to the caller that is just invalid.
    return false;
  }
}
