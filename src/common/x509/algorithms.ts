import type { KeyObject } from 'node:crypto';
import { invalidArgument } from '../errors.js';
import { nullValue, oid, sequence } from './der.js';

/** Object identifiers meshid writes or reads (RFC 5280, RFC 5480, RFC 5758, RFC 8017). */
export const Oid = {
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

export type Digest = 'sha256' | 'sha384' | 'sha512';

/** How an issuer key signs: the digest for crypto.sign and the pre-encoded AlgorithmIdentifier. */
export interface SignatureAlgorithm {
  readonly digest: Digest;
  /** e.g. "ecdsa-with-SHA256", for messages. */
  readonly name: string;
  /** The complete AlgorithmIdentifier SEQUENCE, as it appears in TBSCertificate.signature and Certificate. */
  readonly identifierDer: Buffer;
}

const ecdsa = (digest: Digest, dotted: string, name: string): SignatureAlgorithm => ({
  digest,
  name,
  // RFC 5758 §3.2: the parameters field of ecdsa-with-SHA* MUST be absent.
  identifierDer: sequence(oid(dotted)),
});
const rsa = (digest: Digest, dotted: string, name: string): SignatureAlgorithm => ({
  digest,
  name,
  // RFC 8017 App. C / RFC 4055 §5: sha*WithRSAEncryption carries an explicit NULL.
  identifierDer: sequence(oid(dotted), nullValue()),
});

/** The EC curves meshid reads: JWK name, OpenSSL name, named-curve OID (RFC 5480 §2.1.1.1) and coordinate size. */
export interface EcCurve {
  readonly jwk: 'P-256' | 'P-384' | 'P-521';
  readonly openssl: string;
  readonly oid: string;
  readonly size: number;
}

export const EC_CURVES: readonly EcCurve[] = Object.freeze([
  { jwk: 'P-256', openssl: 'prime256v1', oid: '1.2.840.10045.3.1.7', size: 32 },
  { jwk: 'P-384', openssl: 'secp384r1', oid: '1.3.132.0.34', size: 48 },
  { jwk: 'P-521', openssl: 'secp521r1', oid: '1.3.132.0.35', size: 66 },
]);

export const ecCurveByOid = (curveOid: string): EcCurve | undefined => EC_CURVES.find((c) => c.oid === curveOid);

const ECDSA_P256 = ecdsa('sha256', Oid.ecdsaWithSha256, 'ecdsa-with-SHA256');
const ECDSA_P384 = ecdsa('sha384', Oid.ecdsaWithSha384, 'ecdsa-with-SHA384');
const ECDSA_P521 = ecdsa('sha512', Oid.ecdsaWithSha512, 'ecdsa-with-SHA512');
const RSA_SHA256 = rsa('sha256', Oid.sha256WithRsa, 'sha256WithRSAEncryption');

/** Signature algorithms accepted when verifying (certificates and CSRs), by OID. */
const VERIFY_DIGESTS: ReadonlyMap<string, { digest: Digest; keyType: 'ec' | 'rsa' }> = new Map([
  [Oid.ecdsaWithSha256, { digest: 'sha256', keyType: 'ec' }],
  [Oid.ecdsaWithSha384, { digest: 'sha384', keyType: 'ec' }],
  [Oid.ecdsaWithSha512, { digest: 'sha512', keyType: 'ec' }],
  [Oid.sha256WithRsa, { digest: 'sha256', keyType: 'rsa' }],
  [Oid.sha384WithRsa, { digest: 'sha384', keyType: 'rsa' }],
  [Oid.sha512WithRsa, { digest: 'sha512', keyType: 'rsa' }],
]);

/** The digest and key type behind a signature OID, or undefined when meshid does not accept it. */
export function verificationAlgorithm(signatureOid: string): { digest: Digest; keyType: 'ec' | 'rsa' } | undefined {
  return VERIFY_DIGESTS.get(signatureOid);
}

/**
 * The signature algorithm a CA key signs with: the digest matches the curve strength for EC keys (P-256 → SHA-256,
 * P-384 → SHA-384, P-521 → SHA-512), SHA-256 for RSA. Throws MeshidError(invalid_argument) for other keys.
 */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    switch (key.asymmetricKeyDetails?.namedCurve) {
      case 'prime256v1':
        return ECDSA_P256;
      case 'secp384r1':
        return ECDSA_P384;
      case 'secp521r1':
        return ECDSA_P521;
    }
    throw invalidArgument(`EC curve ${key.asymmetricKeyDetails?.namedCurve ?? '(unknown)'} is not supported for signing certificates`);
  }
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw invalidArgument('RSA keys shorter than 2048 bits are not supported');
    return RSA_SHA256;
  }
  throw invalidArgument(`${type ?? 'unknown'} keys are not supported for signing certificates (use EC P-256, P-384, P-521 or RSA of 2048 bits or more)`);
}

/**
 * Checks that a public key may be certified in an X.509-SVID: EC on P-256, P-384 or P-521 (named curves only, which
 * node:crypto guarantees for keys it parsed) or RSA of at least 2048 bits. Returns whether it is an RSA key, which
 * decides keyEncipherment (SPEC-NOTES §3).
 */
export function checkSubjectPublicKey(key: KeyObject): { isRsa: boolean } {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'secp384r1' || curve === 'secp521r1') return { isRsa: false };
    throw invalidArgument(`EC curve ${curve ?? '(explicit parameters)'} is not accepted; use P-256, P-384 or P-521`);
  }
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw invalidArgument('RSA keys shorter than 2048 bits are not accepted');
    return { isRsa: true };
  }
  throw invalidArgument(`${type ?? 'unknown'} public keys are not accepted in X.509-SVIDs; use EC P-256, P-384, P-521 or RSA >= 2048`);
}
