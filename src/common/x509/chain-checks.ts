import { verify } from 'node:crypto';
import { invalidArgument } from '../errors.js';
import { Oid, verificationAlgorithm } from './algorithms.js';
import type { ParsedCertificate } from './certificate.js';

// What chain verification (verifyParsedChain and checkTrustAnchor, chain-verification.ts) requires of each certificate and
// of each link to its issuer (RFC 5280 §6.1), with the messages an operator reads when a chain is refused; the walk
// along the chain and the choice of a trusted root stay with the callers.

/** Critical extensions this verifier understands; any other critical extension fails the chain (RFC 5280 §4.2). */
const UNDERSTOOD_CRITICAL = new Set<string>([Oid.basicConstraints, Oid.keyUsage, Oid.extKeyUsage, Oid.subjectAltName]);

export function checkTime(c: ParsedCertificate, now: number, label: string): void {
  if (now < c.notBefore) throw invalidArgument(`${label} is not valid before ${new Date(c.notBefore).toISOString()}`);
  if (now > c.notAfter) throw invalidArgument(`${label} expired at ${new Date(c.notAfter).toISOString()}`);
}

/** Critical extensions an operator's PKI may carry, by name: the OID alone tells an operator nothing. */
const NAMED_EXTENSIONS: ReadonlyMap<string, string> = new Map([
  [Oid.nameConstraints, 'nameConstraints'],
  ['2.5.29.32', 'certificatePolicies'],
  ['2.5.29.36', 'policyConstraints'],
  ['2.5.29.54', 'inhibitAnyPolicy'],
]);

export function checkCriticalExtensions(c: ParsedCertificate, label: string): void {
  for (const e of c.extensions) {
    if (e.critical && !UNDERSTOOD_CRITICAL.has(e.oid)) {
      const name = NAMED_EXTENSIONS.get(e.oid);
      throw invalidArgument(
        `${label} has an unsupported critical extension ${name === undefined ? e.oid : `${e.oid} (${name}), which meshid's chain verification does not evaluate, so its agents would refuse every chain through it`}`,
      );
    }
  }
}

/** `below` = number of intermediates between this issuer and the leaf, for pathLenConstraint (RFC 5280 §4.2.1.9). */
export function checkIssuer(issuer: ParsedCertificate, below: number, label: string): void {
  if (!issuer.isCa) throw invalidArgument(`${label} issues a certificate but is not a CA (basicConstraints cA is not true)`);
  if (issuer.keyUsage !== undefined && !issuer.keyUsage.includes('keyCertSign')) {
    throw invalidArgument(`${label} issues a certificate but its keyUsage lacks keyCertSign`);
  }
  if (issuer.pathLenConstraint !== undefined && below > issuer.pathLenConstraint) {
    throw invalidArgument(`${label} allows ${issuer.pathLenConstraint} intermediate(s) below it (pathLenConstraint) but the chain has ${below}`);
  }
}

/** Signature algorithms a PKI may use that meshid does not verify, named for the message that refuses them. */
const UNVERIFIED_SIGNATURES: ReadonlyMap<string, string> = new Map([
  ['1.3.101.112', 'Ed25519'],
  ['1.3.101.113', 'Ed448'],
  ['2.16.840.1.101.3.4.3.2', 'dsa-with-SHA256'],
]);

function unsupportedSignatureAlgorithm(signatureOid: string): string {
  const name = UNVERIFIED_SIGNATURES.get(signatureOid);
  if (name === undefined) return `unsupported algorithm ${signatureOid}`;
  return `${name} (${signatureOid}), which meshid does not verify: it verifies ECDSA and RSA signatures only`;
}

export function checkIssuedBy(child: ParsedCertificate, issuer: ParsedCertificate, childLabel: string, issuerLabel: string): void {
  if (!child.structure.issuerName.equals(issuer.structure.subjectName)) {
    throw invalidArgument(`${childLabel} names issuer "${child.issuer}", but the next certificate is ${issuerLabel} with subject "${issuer.subject}"`);
  }
  if (child.authorityKeyId !== undefined && issuer.subjectKeyId !== undefined && child.authorityKeyId !== issuer.subjectKeyId) {
    throw invalidArgument(`${childLabel} has authority key identifier ${child.authorityKeyId}, but ${issuerLabel} has key identifier ${issuer.subjectKeyId}`);
  }
  if (!child.structure.tbsSignatureAlgorithm.equals(child.structure.signatureAlgorithm)) {
    throw invalidArgument(`${childLabel} has different inner and outer signature algorithms`);
  }
  const alg = verificationAlgorithm(child.structure.signatureAlgorithmOid);
  if (alg === undefined) throw invalidArgument(`${childLabel} is signed with ${unsupportedSignatureAlgorithm(child.structure.signatureAlgorithmOid)}`);
  if (verifiedCaLinks.get(child)?.has(issuer)) return;
  // Over the TBS bytes with the issuer's key, as X509_verify does, without an OpenSSL object for the child.
  let ok: boolean;
  try {
    const key = issuer.publicKey;
    ok = key.asymmetricKeyType === alg.keyType && verify(alg.digest, child.structure.tbs, { key, dsaEncoding: 'der' }, child.structure.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw invalidArgument(`the signature on ${childLabel} does not verify with the key of ${issuerLabel}`);
  if (child.isCa) {
    let issuers = verifiedCaLinks.get(child);
    if (issuers === undefined) verifiedCaLinks.set(child, (issuers = new WeakSet()));
    issuers.add(issuer);
  }
}

/**
 * CA certificates whose signature has been checked, by the issuers it verified with. Every SVID chain repeats the
 * same intermediate → root link; CA certificates are parsed once (parseCaLabelled), so the link is verified once
 * per pair of parsed objects instead of once per SVID — half the signature checks when 10,000 SVIDs are accepted or
 * restored. Parsed certificates are immutable, so a result never goes stale; weak, so it goes with them.
 */
const verifiedCaLinks = new WeakMap<ParsedCertificate, WeakSet<ParsedCertificate>>();
