import fs from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { failedPrecondition, invalidArgument, isMeshidError, MeshidError } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { importPrivateKey, keyMatchesCertificate } from '../../common/x509/keys.js';
import { pemToDerList } from '../../common/x509/pem.js';
import { checkWritableX509Authority } from '../../common/spiffe/bundle.js';
import { caProfileProblems } from '../../common/x509/ca-profile.js';
import { signatureAlgorithmFor } from '../../common/x509/algorithms.js';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';
import { checkTrustAnchor, verifyCaChain } from '../../common/x509/chain-verification.js';
import { trustDomainId } from '../../common/spiffe/spiffe-id.js';

/**
 * An operator-supplied CA that signs meshid's datacenter intermediates (SPIRE: an UpstreamAuthority). Either a
 * self-signed root, published as the trust domain's bundle, or a CA issued by the operator's PKI: then its issuers
 * up to the PKI's roots travel in every chain meshid serves, and the PKI's roots are the bundle.
 */
export interface UpstreamCa {
  /** The CA certificate whose key signs the intermediates. */
  readonly certDer: Buffer;
  readonly privateKey: KeyObject;
  /** The certificates above certDer, nearest first, up to (not including) a bundle root. */
  readonly chainDer: readonly Buffer[];
  /** The PKI's roots, published as the trust domain's X.509 bundle; undefined when certDer is itself the root. */
  readonly bundleDer: readonly Buffer[] | undefined;
}

export interface UpstreamCaFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly bundleFile?: string | undefined;
}

/** The setting that names each upstream CA file, for messages: the three files are easily swapped. */
const UPSTREAM_SETTINGS = {
  certificate: 'upstream_ca_cert, --upstream-ca-cert',
  key: 'upstream_ca_key, --upstream-ca-key',
  bundle: 'upstream_bundle, --upstream-bundle',
} as const;

/** Reads the upstream CA's files: the certificate (then its issuers, if any), its key, and the PKI's roots. */
export function loadUpstreamCa(files: UpstreamCaFiles): UpstreamCa {
  const read = (file: string, what: keyof typeof UPSTREAM_SETTINGS): string => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw failedPrecondition(`cannot read the upstream CA ${what}: ${(err as Error).message}`);
    }
  };
  // A parse error says what is wrong with the text ("no PEM CERTIFICATE block found"), not which of the files it is.
  const parsed = <T>(file: string, what: keyof typeof UPSTREAM_SETTINGS, parse: (text: string) => T): T => {
    const text = read(file, what);
    try {
      return parse(text);
    } catch (err) {
      if (!isMeshidError(err)) throw err;
      throw new MeshidError(err.code, `the upstream CA ${what} ${file} (${UPSTREAM_SETTINGS[what]}): ${err.message}`, { cause: err });
    }
  };
  const certs = parsed(files.certFile, 'certificate', (text) => pemToDerList(text));
  if (certs.length === 0) throw failedPrecondition(`${files.certFile} holds no certificate`);
  const privateKey = parsed(files.keyFile, 'key', importPrivateKey);
  if (files.bundleFile === undefined) {
    if (certs.length > 1) {
      throw failedPrecondition(
        `${files.certFile} holds a chain of ${certs.length} certificates: give the roots it chains to with --upstream-bundle (upstream_bundle)`,
      );
    }
    return { certDer: certs[0]!, privateKey, chainDer: [], bundleDer: undefined };
  }
  const bundleDer = parsed(files.bundleFile, 'bundle', (text) => pemToDerList(text));
  if (bundleDer.length === 0) throw failedPrecondition(`${files.bundleFile} holds no certificate`);
  // A chain file that ends with the root: served chains need not carry the anchor.
  const chainDer = certs.slice(1).filter((c) => !bundleDer.some((r) => r.equals(c)));
  return { certDer: certs[0]!, privateKey, chainDer, bundleDer };
}

/**
 * Everything that would otherwise surface later as SVIDs nobody accepts: the key matches and meshid can sign with it
 * (checkSigningKey), the certificate is a CA that may sign one more CA level (meshid's intermediates), its chain
 * verifies against the bundle (or, without a bundle, it is a usable trust anchor itself), and every bundle root is
 * one, with a key the SPIFFE bundle documents can carry (checkWritableX509Authority); every CA of the PKI a verifier
 * meets has what strict verifiers require of a CA (checkVerifiable). Checked at every start: the files may have
 * changed. Throws invalid_argument naming the file's role and the failed check.
 */
export function checkUpstreamCa(upstream: UpstreamCa, now: number, trustDomain: string): void {
  const cert = parseCertificate(upstream.certDer);
  if (!cert.isCa) throw invalidArgument('the upstream CA certificate is not a CA (basicConstraints cA=false)');
  checkSpiffeId(cert, trustDomain);
  // Intermediates name their issuer by it (authorityKeyIdentifier), and taints and chains follow that link.
  if (cert.subjectKeyId === undefined) throw invalidArgument('the upstream CA certificate has no subjectKeyIdentifier extension, which RFC 5280 requires of CA certificates');
  if (cert.pathLenConstraint === 0) {
    throw invalidArgument('the upstream CA certificate has pathLenConstraint 0: it cannot sign the datacenter intermediates, which are CAs themselves');
  }
  if (!keyMatchesCertificate(upstream.privateKey, upstream.certDer)) throw invalidArgument('the upstream CA key does not match its certificate');
  if (upstream.bundleDer === undefined) {
    try {
      checkTrustAnchor(upstream.certDer, now, 'the upstream CA certificate');
    } catch (err) {
      // Caught here, not when the first agent refuses every SVID, or when OpenSSL or Envoy fail to find an issuer.
      throw invalidArgument(
        `${(err as Error).message}; without --upstream-bundle the upstream CA is published as the trust domain's root, which agents, OpenSSL and Envoy use as a trust anchor: use a self-signed root CA certificate without name constraints, or give the roots it chains to with --upstream-bundle`,
        err,
      );
    }
    checkWritableX509Authority(upstream.certDer, 'the upstream CA certificate');
  } else {
    upstream.bundleDer.forEach((root, i) => {
      checkTrustAnchor(root, now, `upstream bundle certificate ${i}`);
      // The bundle endpoint, "bundle show --format spiffe" and every agent's saved state carry it as a JWK.
      checkWritableX509Authority(root, `upstream bundle certificate ${i}`);
    });
    checkRoomForIntermediates(upstream);
    try {
      verifyCaChain([upstream.certDer, ...upstream.chainDer], upstream.bundleDer, now);
    } catch (err) {
      throw invalidArgument(`the upstream CA certificate does not chain to the upstream bundle: ${(err as Error).message}`, err);
    }
  }
  checkVerifiable(upstream.certDer, 'the upstream CA certificate');
  upstream.chainDer.forEach((der, i) => checkVerifiable(der, `upstream CA chain certificate ${i + 1}`));
  const anchors = chainAnchors(upstream);
  upstream.bundleDer?.forEach((der, i) => {
    // Only the roots these chains end at: another root the bundle publishes anchors none of meshid's SVIDs.
    if (anchors.some((a) => a.der.equals(der))) checkVerifiable(der, `upstream bundle certificate ${i}`);
  });
  // Last: a self-signed CA of such a key fails above already, as a root the bundle documents cannot carry.
  checkSigningKey(upstream.privateKey);
}

/**
 * A SPIFFE ID in the upstream CA's URI SAN must be the trust domain's own, with no path (X509-SVID §3.2; SPEC-NOTES
 * §4): meshid refuses to sign intermediates under one of another trust domain. Caught only there, the start had
 * committed it first: a first start left the data dir claimed by that other trust domain, and a restart onto renewed
 * files published it and, after root_activation_delay, could no longer renew an intermediate. Other URIs (an https
 * URI of the PKI) name no trust domain and are left alone.
 */
function checkSpiffeId(cert: ParsedCertificate, trustDomain: string): void {
  const own = trustDomainId(trustDomain);
  const other = cert.uriSans.find((u) => u.startsWith('spiffe://') && u !== own);
  if (other === undefined) return;
  throw invalidArgument(
    `the upstream CA certificate ("${cert.subject}") has the SPIFFE ID ${other} in its URI SAN, but it would sign the intermediates of ${own}: ` +
      `issue it with URI SAN ${own} (a signing certificate's SPIFFE ID has no path) or with no SPIFFE ID`,
  );
}

/**
 * The upstream CA's key signs every datacenter intermediate, so meshid must be able to sign certificates with it (EC on
 * P-256, P-384 or P-521, RSA of 2048 bits or more). Another key (EC on secp256k1 or a Brainpool curve, RSA-1024) may
 * head a chain that verifies, and files renewed with one were taken at a restart: the server ran on until the
 * intermediates' half-life, when every rotation failed, the JWT key's with them.
 */
function checkSigningKey(privateKey: KeyObject): void {
  try {
    signatureAlgorithmFor(privateKey);
  } catch (err) {
    if (!isMeshidError(err)) throw err;
    // The signer's reason lists the usable keys itself for some keys (Ed25519): name the key here and list them once.
    throw invalidArgument(
      `the upstream CA key (${keyDescription(privateKey)}) cannot sign meshid's datacenter intermediates: issue the upstream CA with an EC P-256, P-384 or P-521 key, or an RSA key of 2048 bits or more`,
      err,
    );
  }
}

function keyDescription(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec':
      return `EC on ${details?.namedCurve ?? 'a curve given by explicit parameters'}`;
    case 'rsa':
    case 'rsa-pss':
      return `${key.asymmetricKeyType === 'rsa' ? 'RSA' : 'RSA-PSS'} of ${details?.modulusLength ?? '?'} bits`;
    case 'ed25519':
      return 'Ed25519';
    case 'ed448':
      return 'Ed448';
    default:
      return key.asymmetricKeyType ?? 'unknown type';
  }
}

/**
 * The bundle roots the upstream CA's chain can end at: those named as its last certificate's issuer and, when both
 * say, with its key (a PKI rotating its root often keeps the name: the root it rotated from or to, published beside
 * the other, anchors none of meshid's chains and must not have its limits or flaws held against them).
 */
function chainAnchors(upstream: UpstreamCa): ParsedCertificate[] {
  const last = parseCertificate(upstream.chainDer[upstream.chainDer.length - 1] ?? upstream.certDer);
  return (upstream.bundleDer ?? [])
    .map(parseCertificate)
    .filter((r) => r.structure.subjectName.equals(last.structure.issuerName))
    .filter((r) => r.subjectKeyId === undefined || last.authorityKeyId === undefined || r.subjectKeyId === last.authorityKeyId);
}

/**
 * Every CA of the upstream PKI that verifiers meet, in the chains meshid serves or as their trust anchor, must have
 * what strict verifiers require of a CA (caProfileProblems): RFC 5280 lets a CA leave some of it out, but then every
 * SVID under it fails for some of the trust domain's workloads, and would only be found out there.
 */
function checkVerifiable(der: Buffer, what: string): void {
  const cert = parseCertificate(der);
  const problems = caProfileProblems(cert);
  if (problems.length === 0) return;
  throw invalidArgument(
    `${what} ("${cert.subject}") ${problems.join(', ')}: OpenSSL in strict mode (Python 3.13's default), pyca/cryptography, go-spiffe or Envoy ` +
      'would refuse every SVID whose chain goes through it; reissue it with basicConstraints=critical,CA:TRUE, keyUsage=critical,keyCertSign,cRLSign, ' +
      'a subjectKeyIdentifier, an authorityKeyIdentifier (unless self-signed), and no extKeyUsage or one with both serverAuth and clientAuth',
  );
}

/**
 * Every CA above meshid's intermediates must allow them: a certificate's pathLenConstraint counts the CAs below it,
 * and each served chain has the upstream CA's issuers below it plus meshid's datacenter intermediate.
 */
function checkRoomForIntermediates(upstream: UpstreamCa): void {
  const path = [upstream.certDer, ...upstream.chainDer].map(parseCertificate);
  [...path, ...chainAnchors(upstream)].forEach((c, i) => {
    const below = Math.min(i, path.length) + 1;
    if (c.pathLenConstraint !== undefined && c.pathLenConstraint < below) {
      throw invalidArgument(
        `"${c.subject}" has pathLenConstraint ${c.pathLenConstraint}, but chains under the upstream CA put ${below} CA certificate(s) below it (the datacenter intermediate${below > 1 ? ' and the upstream CAs' : ''}): the upstream PKI must allow one more level`,
      );
    }
  });
}

/**
 * Before the CA is taken on as a root: it, its chain and the PKI root that chain ends at must live long enough for two
 * intermediates (newIntermediate bounds each by all of them; a PKI may issue a CA that outlives its root).
 */
export function checkUpstreamLifetime(upstream: UpstreamCa, now: number, intermediateTtlMs: number): void {
  // Of several roots the chain can end at (one renewed), it verifies against the one living longest.
  const anchor = chainAnchors(upstream).reduce<ParsedCertificate | undefined>((a, b) => (a === undefined || b.notAfter > a.notAfter ? b : a), undefined);
  const expiring = [...[upstream.certDer, ...upstream.chainDer].map(parseCertificate), ...(anchor === undefined ? [] : [anchor])]
    .reduce((a, b) => (b.notAfter < a.notAfter ? b : a));
  if (expiring.notAfter < now + 2 * intermediateTtlMs) {
    const what = expiring.der.equals(upstream.certDer)
      ? 'CA certificate'
      : expiring === anchor ? `PKI's root "${expiring.subject}"` : `CA chain's certificate "${expiring.subject}"`;
    throw invalidArgument(
      `the upstream ${what} expires ${new Date(expiring.notAfter).toISOString()}, too soon to cover two intermediate lifetimes (${formatDuration(intermediateTtlMs)} each): renew it or lower intermediate_ttl`,
    );
  }
}
