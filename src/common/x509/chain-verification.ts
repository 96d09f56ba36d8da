import { invalidArgument, isMeshidError } from '../errors.js';
import { certificateKeyIds, parseCertificate, type ParsedCertificate } from './certificate.js';
import { checkCriticalExtensions, checkIssuedBy, checkIssuer, checkTime } from './chain-checks.js';

// Chain verification (X509-SVID §5, RFC 5280 §6.1) over parsed certificates: the walk from a leaf to a trusted root,
// trust anchors, and the per-process cache of parsed CA certificates that makes re-checking every SVID cheap. Parsing
// is certificate.ts; the checks on each certificate and link are chain-checks.ts.

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
