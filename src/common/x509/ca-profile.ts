import { Oid } from './algorithms.js';
import type { ParsedCertificate } from './certificate.js';

/** anyExtendedKeyUsage (RFC 5280 §4.2.1.12): a CA with it restricts no purpose. */
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/**
 * What the verifiers meshid's SVIDs must pass refuse in a CA certificate of the chains they verify, root included,
 * beyond what RFC 5280 lets a CA leave out (SPEC-NOTES §4). meshid's own CAs meet all of it by construction; an
 * operator's upstream PKI may not, and chains through such a CA are then refused by every workload of these
 * verifiers, so the upstream CA files are checked with this at start:
 * - basicConstraints critical: OpenSSL -x509_strict (error 89; Python 3.13's default TLS context sets it) and
 *   pyca/cryptography's verifier;
 * - keyUsage present, with keyCertSign: the same (error 92), and go-spiffe, whose x509svid.ParseRaw refuses a
 *   Workload API response whose chain carries a CA without keyCertSign (RFC 5280 reads an absent keyUsage as "any");
 * - subjectKeyIdentifier present, authorityKeyIdentifier present unless self-issued: OpenSSL -x509_strict (86, 85);
 * - extKeyUsage, if present, allowing serverAuth and clientAuth (or any purpose): OpenSSL and BoringSSL (Envoy) apply
 *   a TLS peer's purpose to the CAs above it (error 26), so a serverAuth-only CA fails every SVID used as a client;
 * - a positive serial number (RFC 5280 §4.1.2.2): Go ≥ 1.23's parser (go-spiffe, SPIRE) and pyca/cryptography refuse
 *   a negative one, the latter zero too.
 * Returns one phrase per problem, e.g. "has no keyUsage extension"; empty when there is none.
 */
export function caProfileProblems(cert: ParsedCertificate): string[] {
  const problems: string[] = [];
  const serial = Buffer.from(cert.serialHex, 'hex');
  if (serial.length === 0 || (serial[0]! & 0x80) !== 0 || serial.every((b) => b === 0)) problems.push('has a serial number that is not positive');
  const ext = (oid: string) => cert.extensions.find((e) => e.oid === oid);
  const basic = ext(Oid.basicConstraints);
  if (basic === undefined || !cert.isCa) problems.push('is not a CA (basicConstraints cA is not true)');
  else if (!basic.critical) problems.push('has basicConstraints not marked critical');
  if (cert.keyUsage === undefined) problems.push('has no keyUsage extension');
  else if (!cert.keyUsage.includes('keyCertSign')) problems.push('has a keyUsage without keyCertSign');
  if (ext(Oid.subjectKeyIdentifier) === undefined) problems.push('has no subjectKeyIdentifier');
  const selfIssued = cert.structure.issuerName.equals(cert.structure.subjectName);
  if (!selfIssued && ext(Oid.authorityKeyIdentifier) === undefined) problems.push('has no authorityKeyIdentifier');
  const eku = cert.extKeyUsage;
  if (eku !== undefined && !eku.includes(ANY_EXTENDED_KEY_USAGE) && !(eku.includes(Oid.serverAuth) && eku.includes(Oid.clientAuth))) {
    problems.push('has an extKeyUsage without both serverAuth and clientAuth');
  }
  return problems;
}
