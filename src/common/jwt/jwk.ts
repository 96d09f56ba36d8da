import { createPublicKey, type KeyObject } from 'node:crypto';
import { isJsonObject } from '../json-object.js';
import { invalidArgument } from '../errors.js';
import { decodeBase64Url, encodeBase64Url } from './base64url.js';

/**
 * A JSON Web Key as meshid reads and writes it (RFC 7517, RFC 7518 §6). Only public members are ever emitted;
 * bundle-level members (`use`, `x5c`) are added by the SPIFFE bundle code.
 */
export interface Jwk {
  kty: string;
  kid?: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  use?: string;
  x5c?: string[];
  [member: string]: unknown;
}

/** JWK curve name ↔ OpenSSL curve name and coordinate length in bytes (RFC 7518 §6.2.1.2: full length, no trimming). */
const CURVES: ReadonlyArray<{ crv: string; namedCurve: string; size: number }> = [
  { crv: 'P-256', namedCurve: 'prime256v1', size: 32 },
  { crv: 'P-384', namedCurve: 'secp384r1', size: 48 },
  { crv: 'P-521', namedCurve: 'secp521r1', size: 66 },
];

/**
 * RFC 8037 §2 octet key pairs meshid reads and writes, with the length of `x` (the raw public key) in bytes: Ed25519
 * only. X25519/X448 cannot sign, so no CA certificate can usefully hold one. Ed448 is left out because go-jose (SPIRE,
 * go-spiffe) refuses a whole JWK Set holding an Ed448 key ("unknown curve"): one in a SPIFFE bundle document meshid
 * writes would make SPIRE refuse every key of it. Go, BoringSSL (Envoy) and rustls do not verify Ed448 signatures
 * either, so such a root would authenticate little even where it arrived.
 */
const OKP_CURVES: ReadonlyArray<{ crv: string; keyType: string; size: number }> = [{ crv: 'Ed25519', keyType: 'ed25519', size: 32 }];

/** RFC 7518 §6.2.2 / §6.3.2 private members, plus `k` of symmetric keys: never in a published JWK. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** The JWK curve name of an EC key, or undefined for other curves and key types. */
export function jwkCurve(key: KeyObject): string | undefined {
  if (key.asymmetricKeyType !== 'ec') return undefined;
  return CURVES.find((c) => c.namedCurve === key.asymmetricKeyDetails?.namedCurve)?.crv;
}

function fullLength(coordinate: string, size: number): string {
  const bytes = Buffer.from(coordinate, 'base64url');
  if (bytes.length >= size) return coordinate;
  return encodeBase64Url(Buffer.concat([Buffer.alloc(size - bytes.length), bytes]));
}

/**
 * The public JWK of an EC (P-256/384/521), RSA or Ed25519 key with the given `kid` (SPEC-NOTES §6): EC gives
 * kty, kid, crv, x, y (full-length coordinates); RSA gives kty, kid, n, e; Ed25519 gives kty "OKP", kid, crv, x
 * (RFC 8037 §2), which only X.509 roots have (an x509-svid entry, whose certificate is what counts: JWT-SVID §3 allows
 * no EdDSA, and meshid signs JWT-SVIDs with EC or RSA keys only). A private key is accepted and only its public half
 * is exported. An empty `kid` is allowed here for X.509 bundle entries, which must not carry one.
 */
export function publicJwk(publicKey: KeyObject, kid: string): Jwk {
  const pub = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  if (pub.type !== 'public') throw invalidArgument(`cannot publish a ${pub.type} key as a JWK`);
  const kidMember = kid === '' ? {} : { kid };
  const curve = CURVES.find((c) => c.crv === jwkCurve(pub));
  const okp = OKP_CURVES.find((c) => c.keyType === pub.asymmetricKeyType);
  // Checked before exporting: node:crypto throws a plain Error for a key type JWK has no form for (DSA, say).
  if (pub.asymmetricKeyType !== 'rsa' && curve === undefined && okp === undefined) {
    throw invalidArgument(`unsupported key for a JWK: ${pub.asymmetricKeyType} ${pub.asymmetricKeyDetails?.namedCurve ?? ''}`.trim());
  }
  const exported = pub.export({ format: 'jwk' });
  if (curve !== undefined) {
    return { kty: 'EC', ...kidMember, crv: curve.crv, x: fullLength(String(exported.x), curve.size), y: fullLength(String(exported.y), curve.size) };
  }
  if (okp !== undefined) return { kty: 'OKP', ...kidMember, crv: okp.crv, x: String(exported.x) };
  return { kty: 'RSA', ...kidMember, n: String(exported.n), e: String(exported.e) };
}

function member(jwk: Record<string, unknown>, name: string, label: string): string {
  const value = jwk[name];
  if (typeof value !== 'string' || value === '') throw invalidArgument(`${label}: member "${name}" is missing or not a string`);
  return value;
}

/** Which key types jwkToPublicKey reads beyond EC and RSA. */
export interface JwkReadOptions {
  /**
   * Also kty "OKP" with crv Ed25519 (RFC 8037 §2; OKP_CURVES): for x509-svid entries, whose certificate may hold such a
   * key. Not for JWT-SVID keys: JWT-SVID §3 allows RS, ES and PS algorithms only.
   */
  readonly okp?: boolean;
}

/**
 * Builds a public key from a JWK (RFC 7518 §6). Accepts kty EC with crv P-256/P-384/P-521 and full-length x/y, or
 * kty RSA with n/e, and with `options.okp` kty OKP with crv Ed25519 and an `x` of that curve's length. Rejects
 * other key types and any JWK carrying private members (a bundle that leaks a private key is refused, not silently
 * trimmed). Throws MeshidError invalid_argument.
 */
export function jwkToPublicKey(jwk: unknown, label = 'JWK', options: JwkReadOptions = {}): KeyObject {
  if (!isJsonObject(jwk)) throw invalidArgument(`${label} is not a JSON object`);
  const obj = jwk;
  const leaked = PRIVATE_MEMBERS.filter((m) => m in obj);
  if (leaked.length > 0) throw invalidArgument(`${label} carries private key members (${leaked.join(', ')})`);
  const kty = obj['kty'];
  let keyJwk: Record<string, string>;
  if (kty === 'EC') {
    const crv = obj['crv'];
    const curve = CURVES.find((c) => c.crv === crv);
    if (curve === undefined) throw invalidArgument(`${label}: unsupported EC curve ${JSON.stringify(crv)} (expected P-256, P-384 or P-521)`);
    const x = member(obj, 'x', label);
    const y = member(obj, 'y', label);
    for (const [name, value] of [['x', x], ['y', y]] as const) {
      if (decodeBase64Url(value, `${label} member "${name}"`).length !== curve.size) {
        throw invalidArgument(`${label}: member "${name}" must be ${curve.size} bytes for ${curve.crv}`);
      }
    }
    keyJwk = { kty, crv: curve.crv, x, y };
  } else if (kty === 'RSA') {
    const n = member(obj, 'n', label);
    const e = member(obj, 'e', label);
    decodeBase64Url(n, `${label} member "n"`);
    decodeBase64Url(e, `${label} member "e"`);
    keyJwk = { kty, n, e };
  } else if (kty === 'OKP' && options.okp === true) {
    const crv = obj['crv'];
    const curve = OKP_CURVES.find((c) => c.crv === crv);
    if (curve === undefined) throw invalidArgument(`${label}: unsupported OKP curve ${JSON.stringify(crv)} (expected Ed25519)`);
    const x = member(obj, 'x', label);
    if (decodeBase64Url(x, `${label} member "x"`).length !== curve.size) {
      throw invalidArgument(`${label}: member "x" must be ${curve.size} bytes for ${curve.crv}`);
    }
    keyJwk = { kty, crv: curve.crv, x };
  } else {
    throw invalidArgument(`${label}: unsupported key type ${JSON.stringify(kty)} (expected ${options.okp === true ? '"EC", "RSA" or "OKP"' : '"EC" or "RSA"'})`);
  }
  try {
    return createPublicKey({ key: keyJwk, format: 'jwk' });
  } catch (err) {
    throw invalidArgument(`${label} is not a valid ${String(kty)} public key`, err);
  }
}
