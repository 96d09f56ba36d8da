import { sign, type KeyObject } from 'node:crypto';
import { bitStringBytes, explicit, sequence, time } from './der.js';
import type { SignatureAlgorithm } from './algorithms.js';
import { randomSerial } from './serial.js';

/** Version v3 as it appears first in TBSCertificate: [0] EXPLICIT INTEGER 2. */
const VERSION_V3 = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);

/** Everything that goes into a certificate, pre-encoded where it can be (RFC 5280 §4.1). */
export interface CertificateTemplate {
  /** A complete DER INTEGER; a fresh random serial when omitted. */
  serial?: Buffer;
  issuerName: Buffer;
  subjectName: Buffer;
  notBefore: number;
  notAfter: number;
  /** The subject's SubjectPublicKeyInfo DER. */
  spki: Buffer;
  /** Complete Extension SEQUENCEs, in the order to write them. */
  extensions: readonly Buffer[];
}

export interface CertificateSigner {
  key: KeyObject;
  algorithm: SignatureAlgorithm;
}

/** The DER TBSCertificate for a template, always v3 with the issuer's signature AlgorithmIdentifier. */
function encodeTbsCertificate(t: CertificateTemplate, algorithm: SignatureAlgorithm): Buffer {
  return sequence(
    VERSION_V3,
    t.serial ?? randomSerial(),
    algorithm.identifierDer,
    t.issuerName,
    sequence(time(t.notBefore), time(t.notAfter)),
    t.subjectName,
    t.spki,
    explicit(3, sequence(...t.extensions)),
  );
}

/**
 * Encodes and signs a certificate. ECDSA signatures come out of crypto.sign as a DER Ecdsa-Sig-Value, which is what
 * X.509 carries in the signature BIT STRING (RFC 5758 §3.2); RSA uses PKCS#1 v1.5.
 */
export function buildCertificate(t: CertificateTemplate, signer: CertificateSigner): Buffer {
  const tbs = encodeTbsCertificate(t, signer.algorithm);
  const signature = sign(signer.algorithm.digest, tbs, { key: signer.key, dsaEncoding: 'der' });
  return sequence(tbs, signer.algorithm.identifierDer, bitStringBytes(signature));
}
