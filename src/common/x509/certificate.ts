import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { invalidArgument, isMeshidError } from '../errors.js';
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
import { checkCriticalExtensions, checkIssuedBy, checkIssuer, checkTime } from './chain-checks.js';

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

// ---- chain verification ----

export interface VerifyChainOptions {
  /** Also require the first certificate to be an end entity (basicConstraints cA=false), as X.509-SVIDs are. */
  requireEndEntity?: boolean;
}

/**
 * Verifies `chain` (leaf first, then each issuer; the root may be omitted) against trusted `roots` at time `now`
 * (epoch ms), in the way X509-SVID §5 describes: every certificate valid at `now`; cert[i] issued by cert[i+1]
 * (issuer Name equals the next subject byte-for-byte, AKI = SKI when both are present, signature verifies with the
 * next key); every issuer a CA (basicConstraints cA=true, keyCertSign when keyUsage is present, pathLenConstraint
 * respected); the last certificate either is a trusted root or is signed by one; no critical extension it does not
 * understand (nameConstraints included: meshid never writes it, so a chain that relies on it is refused).
 * Throws MeshidError(invalid_argument) naming the certificate and the failed check.
 */
export function verifyChain(chain: readonly Buffer[], roots: readonly Buffer[], now: number, options: VerifyChainOptions = {}): void {
  if (chain.length === 0) throw invalidArgument('certificate chain is empty');
  verifyParsedChain(parseLabelled(chain[0]!, 'chain certificate 0'), chain.slice(1), roots, now, options);
}

/**
 * verifyChain for CA certificates alone (an intermediate, then what is above it), parsed once for the process like
 * every CA certificate here: for re-checking, cheaply and often, that an SVID's issuers still chain to the bundle.
 */
export function verifyCaChain(cas: readonly Buffer[], roots: readonly Buffer[], now: number): void {
  if (cas.length === 0) throw invalidArgument('certificate chain is empty');
  verifyParsedChain(parseCaLabelled(cas[0]!, 'chain certificate 0'), cas.slice(1), roots, now);
}

/** verifyChain for a leaf the caller has parsed already; `issuers` are the DER certificates after it. */
export function verifyParsedChain(
  leaf: ParsedCertificate,
  issuers: readonly Buffer[],
  roots: readonly Buffer[],
  now: number,
  options: VerifyChainOptions = {},
): void {
  if (roots.length === 0) throw invalidArgument('no trusted root certificates to verify against');
  const certs = [leaf, ...issuers.map((der, i) => parseCaLabelled(der, `chain certificate ${i + 1}`))];
  const anchors = roots.map((der, i) => parseCaLabelled(der, `root certificate ${i}`));
  const label = (i: number): string => `certificate ${i} (${describe(certs[i]!)})`;

  certs.forEach((c, i) => {
    checkTime(c, now, label(i));
    checkCriticalExtensions(c, label(i));
  });
  if (options.requireEndEntity && certs[0]!.isCa) throw invalidArgument(`${label(0)} is a CA certificate, not an end entity`);

  for (let i = 0; i + 1 < certs.length; i++) {
    checkIssuer(certs[i + 1]!, i, label(i + 1));
    checkIssuedBy(certs[i]!, certs[i + 1]!, label(i), label(i + 1));
  }

  const last = certs[certs.length - 1]!;
  const lastIndex = certs.length - 1;
  if (anchors.some((r) => r.der.equals(last.der))) return; // The chain carries the root itself.

  const named = anchors.filter((r) => r.structure.subjectName.equals(last.structure.issuerName));
  if (named.length === 0) {
    throw invalidArgument(`${label(lastIndex)} was issued by "${last.issuer}", which is not a trusted root`);
  }
  const failures: string[] = [];
  for (const root of named) {
    const rootLabel = `trusted root (${describe(root)})`;
    try {
      checkTime(root, now, rootLabel);
      checkCriticalExtensions(root, rootLabel);
      checkIssuer(root, lastIndex, rootLabel);
      checkIssuedBy(last, root, label(lastIndex), rootLabel);
      return;
    } catch (err) {
      if (!isMeshidError(err)) throw err;
      failures.push(err.message);
    }
  }
  throw invalidArgument(failures.length === 1 ? failures[0]! : `no trusted root verifies the chain: ${failures.join('; ')}`);
}

/**
 * Checks that `der` can be a bundle root: what verifyChain, OpenSSL (-x509_strict) and Envoy's SPIFFE validator need
 * of a trust anchor. A CA certificate (keyCertSign if keyUsage is present), valid at `now`, self-issued and signed by
 * its own key (X509-SVID §6.1; a verifier looks for the issuer of one that is not, and fails), with no critical
 * extension verifyChain does not understand (so agents would refuse every SVID under it). Throws
 * MeshidError(invalid_argument) naming `what` and the failed check.
 */
export function checkTrustAnchor(der: Buffer, now: number, what: string): void {
  const cert = parseLabelled(der, what);
  const label = `${what} (${describe(cert)})`;
  checkIssuer(cert, 0, label);
  checkTime(cert, now, label);
  checkCriticalExtensions(cert, label);
  if (!cert.structure.issuerName.equals(cert.structure.subjectName)) {
    throw invalidArgument(`${label} is not self-signed: it was issued by "${cert.issuer}"`);
  }
  checkIssuedBy(cert, cert, label, label);
}

function parseLabelled(der: Buffer, what: string): ParsedCertificate {
  try {
    return parseCertificate(der);
  } catch (err) {
    throw invalidArgument(`${what}: ${(err as Error).message}`, err);
  }
}

/**
 * The same few CA certificates (the datacenter intermediates and the roots) verify every SVID an agent receives;
 * parsing them, and extracting their keys, once instead of per SVID saves two OpenSSL certificate objects and two
 * key imports per verification. Parsed certificates are immutable; the key is the DER itself, so a changed
 * certificate is a different entry. Bounded: a CA rotation leaves a few stale entries until they are evicted.
 */
const parsedCas = new Map<string, ParsedCertificate>();
const PARSED_CA_LIMIT = 64;

/** A CA certificate parsed once for the process (see parsedCas); throws like parseCertificate. */
export function parseCaCertificate(der: Buffer): ParsedCertificate {
  return parseCaLabelled(der, 'CA certificate');
}

function parseCaLabelled(der: Buffer, what: string): ParsedCertificate {
  const key = der.toString('latin1');
  let c = parsedCas.get(key);
  if (c === undefined) {
    c = parseLabelled(Buffer.from(der), what);
    if (parsedCas.size >= PARSED_CA_LIMIT) parsedCas.delete(parsedCas.keys().next().value!);
    parsedCas.set(key, c);
  }
  return c;
}

/**
 * Whether a chain (leaf first) holds a certificate with one of `keyIds` (lowercase hex) as its subject or authority
 * key ID: an SVID signed by, or under, a tainted authority. CA certificates are parsed once for the process, so this
 * can run over every SVID held.
 */
export function chainNamesKeyId(chain: readonly Buffer[], keyIds: ReadonlySet<string>): boolean {
  if (keyIds.size === 0 || chain.length === 0) return false;
  const named = (keyId: string | undefined): boolean => keyId !== undefined && keyIds.has(keyId);
  const issuers = chain.slice(1).map(parseCaCertificate);
  if (issuers.some((c) => named(c.subjectKeyId) || named(c.authorityKeyId))) return true;
  // A leaf's authority key ID equals its issuer's subject key ID when both are present (checked when the SVID was
  // accepted), so the leaf itself is read only when its issuer is not in the chain or names no key ID.
  if (issuers[0]?.subjectKeyId !== undefined) return false;
  const leaf = certificateKeyIds(chain[0]!);
  return named(leaf.subjectKeyId) || named(leaf.authorityKeyId);
}

/** CAs are known by their subject, SVIDs by their SPIFFE ID. */
function describe(c: ParsedCertificate): string {
  // An SVID's name comes from the DER walk: reading the subject would build the OpenSSL view of a lazily parsed leaf.
  if (!c.isCa && c.uriSans[0] !== undefined) return c.uriSans[0];
  return c.subject !== '' ? c.subject : `serial ${c.serialHex}`;
}
