import { createPublicKey, type KeyObject } from 'node:crypto';
import { failedPrecondition, invalidArgument } from '../errors.js';
import { parseIssuingTrustDomain, trustDomainId } from '../spiffe/spiffe-id.js';
import { Oid, signatureAlgorithmFor } from './algorithms.js';
import { buildCertificate } from './certificate-builder.js';
import { parseCertificate } from './certificate.js';
import {
  authorityKeyIdentifierValue,
  basicConstraintsValue,
  extension,
  keyIdentifierOfSpki,
  keyUsageValue,
  subjectAltNameValue,
  subjectKeyIdentifierValue,
} from './extensions.js';
import { keyMatchesCertificate, spkiDer } from './keys.js';
import { encodeName, MAX_COMMON_NAME } from './name.js';
import { checkValidity, checkWithinIssuer } from './validity.js';

/**
 * The trust domain's CA certificates (SPEC-NOTES §4): a self-signed root and one intermediate per datacenter.
 * They are built with the same DER encoder as the leaf signer rather than a library, so the issuer Name in every
 * child is the parent's subject copied byte-for-byte and every flag is exactly what the profile says:
 *   v3, random positive 16-octet serial; basicConstraints cA=true critical (root: no pathLenConstraint, intermediate:
 *   pathLenConstraint 0); keyUsage critical keyCertSign + cRLSign only; SKI (non-critical, RFC 5280 method 1);
 *   AKI = the issuer's SKI (the root's own for the root); one URI SAN `spiffe://<td>` with no path (non-critical,
 *   the subject is never empty); signature algorithm following the issuer key (P-256 → ecdsa-with-SHA256,
 *   P-384 → ecdsa-with-SHA384, P-521 → ecdsa-with-SHA512, RSA → sha256WithRSAEncryption).
 * The functions are async only so that callers need not change if a slower backend (an HSM, a KMS) signs instead.
 */

export interface RootCertificateParams {
  trustDomain: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  notBefore: number;
  notAfter: number;
  /** Defaults to "meshid root CA <trust domain>" (or "meshid root CA" when that would exceed 64 characters). */
  commonName?: string;
}

export interface IntermediateCertificateParams {
  trustDomain: string;
  datacenter: string;
  publicKey: KeyObject;
  issuerCertDer: Buffer;
  issuerPrivateKey: KeyObject;
  notBefore: number;
  notAfter: number;
}

/** Creates the self-signed root CA certificate of a trust domain (SPEC-NOTES §4). Returns DER. */
export async function createRootCertificate(p: RootCertificateParams): Promise<Buffer> {
  const td = parseIssuingTrustDomain(p.trustDomain);
  checkValidity(p.notBefore, p.notAfter);
  const spki = spkiDer(p.publicKey);
  if (!spkiDer(createPublicKey(p.privateKey)).equals(spki)) throw invalidArgument('the root private key does not match its public key');
  const cn = p.commonName ?? fitCommonName(`meshid root CA ${td}`, 'meshid root CA');
  if (cn === '' || cn.length > MAX_COMMON_NAME) throw invalidArgument(`root common name must be 1-${MAX_COMMON_NAME} characters`);
  const subject = encodeName([
    ['O', 'meshid'],
    ['CN', cn],
  ]);
  const ski = keyIdentifierOfSpki(spki);
  return buildCertificate(
    {
      issuerName: subject,
      subjectName: subject,
      notBefore: p.notBefore,
      notAfter: p.notAfter,
      spki,
      extensions: caExtensions(td, ski, ski, undefined),
    },
    { key: p.privateKey, algorithm: signatureAlgorithmFor(p.privateKey) },
  );
}

/**
 * Creates a datacenter intermediate CA certificate signed by `issuerCertDer` (the root, or an upstream CA).
 * Refuses, with MeshidError(failed_precondition), a notAfter beyond the issuer's — meshid never truncates silently —
 * an issuer that is not a CA or whose pathLenConstraint forbids another CA level, and an issuer in another trust
 * domain. Returns DER.
 */
export async function createIntermediateCertificate(p: IntermediateCertificateParams): Promise<Buffer> {
  const td = parseIssuingTrustDomain(p.trustDomain);
  if (!/^[A-Za-z0-9._-]{1,63}$/.test(p.datacenter)) {
    throw invalidArgument(`datacenter "${p.datacenter}" must be 1-63 letters, digits, ".", "-" or "_"`);
  }
  checkValidity(p.notBefore, p.notAfter);
  const issuer = parseCertificate(p.issuerCertDer);
  if (!issuer.isCa) throw failedPrecondition(`the issuing certificate "${issuer.subject}" is not a CA (basicConstraints cA is not true)`);
  if (issuer.pathLenConstraint === 0) {
    throw failedPrecondition(`the issuing CA "${issuer.subject}" has pathLenConstraint 0 and cannot sign another CA`);
  }
  if (issuer.keyUsage !== undefined && !issuer.keyUsage.includes('keyCertSign')) {
    throw failedPrecondition(`the issuing CA "${issuer.subject}" lacks the keyCertSign key usage`);
  }
  if (issuer.subjectKeyId === undefined) {
    throw failedPrecondition(`the issuing CA "${issuer.subject}" has no subjectKeyIdentifier; RFC 5280 §4.2.1.2 requires one on every CA`);
  }
  const issuerTd = issuer.uriSans.find((u) => u.startsWith('spiffe://'));
  if (issuerTd !== undefined && issuerTd !== trustDomainId(td)) {
    throw failedPrecondition(`the issuing CA belongs to ${issuerTd}, not ${trustDomainId(td)}`);
  }
  checkWithinIssuer(p.notAfter, issuer.notAfter, 'intermediate');
  if (!keyMatchesCertificate(p.issuerPrivateKey, p.issuerCertDer)) {
    throw invalidArgument('the issuer private key does not match the issuing CA certificate');
  }
  const spki = spkiDer(p.publicKey);
  const subject = encodeName([
    ['O', 'meshid'],
    ['OU', p.datacenter],
    ['CN', fitCommonName(`meshid ${p.datacenter} intermediate CA`, 'meshid intermediate CA')],
  ]);
  return buildCertificate(
    {
      issuerName: issuer.structure.subjectName,
      subjectName: subject,
      notBefore: p.notBefore,
      notAfter: p.notAfter,
      spki,
      extensions: caExtensions(td, keyIdentifierOfSpki(spki), Buffer.from(issuer.subjectKeyId, 'hex'), 0),
    },
    { key: p.issuerPrivateKey, algorithm: signatureAlgorithmFor(p.issuerPrivateKey) },
  );
}

function caExtensions(td: string, ski: Buffer, aki: Buffer, pathLen: number | undefined): Buffer[] {
  return [
    extension(Oid.basicConstraints, true, basicConstraintsValue(true, pathLen)),
    extension(Oid.keyUsage, true, keyUsageValue(['keyCertSign', 'cRLSign'])),
    extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(ski)),
    extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(aki)),
    extension(Oid.subjectAltName, false, subjectAltNameValue([trustDomainId(td)], [])),
  ];
}

function fitCommonName(preferred: string, fallback: string): string {
  return preferred.length <= MAX_COMMON_NAME ? preferred : fallback;
}
