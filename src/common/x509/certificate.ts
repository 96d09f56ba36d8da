import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { invalidArgument } from '../errors.js';
import { Oid } from './algorithms.js';
import { readCertificateStructure, type CertificateStructure, type RawExtension } from './certificate-structure.js';
import {
  decodeAuthorityKeyIdentifier,
  decodeBasicConstraints,
  decodeExtKeyUsage,
  decodeKeyUsage,
  decodeSubjectAltName,
  decodeSubjectKeyIdentifier,
  type KeyUsageName,
} from './extensions.js';

/** What meshid reads from a certificate. Times are epoch milliseconds; identifiers are lowercase hex. */
export interface ParsedCertificate {
  readonly der: Buffer;
  /** The serial's content octets in hex, as encoded (a leading 00 appears only when the encoding has one). */
  readonly serialHex: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** e.g. "O=meshid, OU=dc-eu1, CN=meshid dc-eu1 intermediate CA"; "" for an empty subject. */
  readonly subject: string;
  readonly issuer: string;
  /** basicConstraints cA (false when the extension is absent). */
  readonly isCa: boolean;
  readonly pathLenConstraint?: number;
  readonly uriSans: string[];
  readonly dnsNames: string[];
  readonly subjectKeyId?: string;
  readonly authorityKeyId?: string;
  /** Key usages set, or undefined when the extension is absent (which RFC 5280 reads as "any"). */
  readonly keyUsage?: KeyUsageName[];
  /** Extended key usage OIDs, or undefined when absent. */
  readonly extKeyUsage?: string[];
  readonly fingerprintSha256: string;
  readonly publicKey: KeyObject;
  /** Every extension as encoded, for checks that need more than the fields above. */
  readonly extensions: readonly RawExtension[];
  /** Byte offsets into the DER; used by chain verification and the leaf signer. */
  readonly structure: CertificateStructure;
  /** node:crypto's view of the same certificate, for signature checks. */
  readonly x509: X509Certificate;
}

/**
 * Parses a DER certificate. OpenSSL (through node:crypto) must accept it, and meshid's own DER walk must find a
 * well-formed RFC 5280 structure with decodable extensions. Throws MeshidError(invalid_argument) otherwise.
 */
export function parseCertificate(der: Buffer): ParsedCertificate {
  if (!Buffer.isBuffer(der) || der.length === 0) throw invalidArgument('malformed certificate: empty input');
  const x509 = openssl(der);
  return parsed(der, () => x509);
}

/**
 * parseCertificate by meshid's DER walk alone; node:crypto's view (x509, subject, issuer, publicKey, fingerprint)
 * is built on first use. For certificates held by the thousand whose checks need none of it — X.509-SVIDs an agent
 * receives from its server or restores from its state: building an OpenSSL certificate object costs ~100 µs, more
 * than verifying the signature. Throws MeshidError(invalid_argument) when the DER walk fails; a later first use of
 * the OpenSSL view throws it when OpenSSL refuses the certificate.
 */
export function parseCertificateLazily(der: Buffer): ParsedCertificate {
  if (!Buffer.isBuffer(der) || der.length === 0) throw invalidArgument('malformed certificate: empty input');
  let x509: X509Certificate | undefined;
  return parsed(der, () => (x509 ??= openssl(der)));
}

function openssl(der: Buffer): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw invalidArgument('malformed certificate: not a DER X.509 certificate', err);
  }
}

function parsed(der: Buffer, x509: () => X509Certificate): ParsedCertificate {
  let structure: CertificateStructure;
  try {
    structure = readCertificateStructure(der);
  } catch (err) {
    throw invalidArgument(`malformed certificate: ${(err as Error).message}`, err);
  }
  const find = (oid: string): RawExtension | undefined => structure.extensions.find((e) => e.oid === oid);
  try {
    const bc = find(Oid.basicConstraints);
    const basic = bc ? decodeBasicConstraints(bc.value) : { ca: false };
    const san = find(Oid.subjectAltName);
    const names = san ? decodeSubjectAltName(san.value) : { uris: [], dnsNames: [] };
    const ski = find(Oid.subjectKeyIdentifier);
    const aki = find(Oid.authorityKeyIdentifier);
    const akiId = aki ? decodeAuthorityKeyIdentifier(aki.value) : undefined;
    const ku = find(Oid.keyUsage);
    const eku = find(Oid.extKeyUsage);
    let publicKey: KeyObject | undefined;
    let fingerprint: string | undefined;
    let subject: string | undefined;
    let issuer: string | undefined;
    return {
      der,
      serialHex: structure.serial.toString('hex'),
      notBefore: structure.notBefore,
      notAfter: structure.notAfter,
      // Memoized: chain verification names the (shared, parsed-once) CA certificates for every SVID it checks.
      get subject(): string {
        return (subject ??= formatName(x509().subject));
      },
      get issuer(): string {
        return (issuer ??= formatName(x509().issuer));
      },
      isCa: basic.ca,
      ...(basic.pathLen !== undefined ? { pathLenConstraint: basic.pathLen } : {}),
      uriSans: names.uris,
      dnsNames: names.dnsNames,
      ...(ski ? { subjectKeyId: decodeSubjectKeyIdentifier(ski.value).toString('hex') } : {}),
      ...(akiId ? { authorityKeyId: akiId.toString('hex') } : {}),
      ...(ku ? { keyUsage: decodeKeyUsage(ku.value) } : {}),
      ...(eku ? { extKeyUsage: decodeExtKeyUsage(eku.value) } : {}),
      get fingerprintSha256(): string {
        return (fingerprint ??= createHash('sha256').update(der).digest('hex'));
      },
      // Extracted on first use: node builds a new KeyObject on every x509.publicKey read, and most parsed leaves
      // are never asked for their key.
      get publicKey(): KeyObject {
        return (publicKey ??= x509().publicKey);
      },
      extensions: structure.extensions,
      structure,
      get x509(): X509Certificate {
        return x509();
      },
    };
  } catch (err) {
    throw invalidArgument(`malformed certificate extension: ${(err as Error).message}`, err);
  }
}

/**
 * The subject and authority key identifiers (lowercase hex) of a DER certificate, read by meshid's DER walk alone:
 * for checks that run over every held SVID, where building OpenSSL objects per certificate would dominate.
 * Throws MeshidError(invalid_argument) when the DER is not a certificate.
 */
export function certificateKeyIds(der: Buffer): { subjectKeyId?: string; authorityKeyId?: string } {
  try {
    const { extensions } = readCertificateStructure(der);
    const ski = extensions.find((e) => e.oid === Oid.subjectKeyIdentifier);
    const aki = extensions.find((e) => e.oid === Oid.authorityKeyIdentifier);
    const akiId = aki ? decodeAuthorityKeyIdentifier(aki.value) : undefined;
    return {
      ...(ski ? { subjectKeyId: decodeSubjectKeyIdentifier(ski.value).toString('hex') } : {}),
      ...(akiId ? { authorityKeyId: akiId.toString('hex') } : {}),
    };
  } catch (err) {
    throw invalidArgument(`malformed certificate: ${(err as Error).message}`, err);
  }
}

/** node:crypto prints one RDN per line; meshid shows Names on one line, comma-separated. */
function formatName(multiline: string): string {
  return multiline.split('\n').filter((l) => l !== '').join(', ');
}
