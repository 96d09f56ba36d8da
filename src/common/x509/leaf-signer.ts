import { createPublicKey, type KeyObject } from 'node:crypto';
import { failedPrecondition, invalidArgument } from '../errors.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import { checkSubjectPublicKey, Oid, signatureAlgorithmFor } from './algorithms.js';
import { buildCertificate, type CertificateSigner } from './certificate-builder.js';
import { parseCertificate, type ParsedCertificate } from './certificate.js';
import {
  authorityKeyIdentifierValue,
  basicConstraintsValue,
  extension,
  extKeyUsageValue,
  keyIdentifierOfSpki,
  keyUsageValue,
  subjectAltNameValue,
  subjectKeyIdentifierValue,
} from './extensions.js';
import { keyMatchesCertificate } from './keys.js';
import { encodeName, MAX_COMMON_NAME } from './name.js';
import { decodeSpki, encodeSpki } from './spki.js';
import { checkValidity, checkWithinIssuer } from './validity.js';

/** What to certify in one X.509-SVID. Times are epoch milliseconds (truncated to whole seconds when encoded). */
export interface LeafRequest {
  /** The workload's public key, as a KeyObject or SubjectPublicKeyInfo DER (e.g. from parseCsr). */
  publicKey: KeyObject | Buffer;
  /** The one URI SAN; a SPIFFE ID with a non-root path in the issuer's trust domain. */
  spiffeId: string;
  dnsNames?: readonly string[];
  notBefore: number;
  notAfter: number;
}

// The constant parts of every leaf (SPEC-NOTES §3), encoded once per process.
/**
 * Subject "O=meshid". A non-empty subject lets the SAN extension stay non-critical (RFC 5280 §4.2.1.6 requires it
 * critical only when the subject is empty), which keeps older TLS stacks that choke on a critical SAN working; the
 * identity itself is only ever the URI SAN.
 */
const LEAF_SUBJECT = encodeName([['O', 'meshid']]);

/**
 * The leaf's subject: "O=meshid", plus CN = the first DNS name as SPIRE's server sets it (credtemplate), because
 * tools that map a certificate's CN to a user (PostgreSQL cert login, Kafka principals, nginx $ssl_client_s_dn)
 * read it. A first DNS name longer than ub-common-name gets no CN rather than one RFC 5280 does not allow (SPIRE
 * copies it unchecked; OpenSSL refuses to write such a CN); the name stays in the SAN either way, and identity is
 * only ever the URI SAN. No x509UniqueIdentifier: SPIRE added one in 1.4.2 and dropped it in 1.9.0 (now an opt-in
 * plugin), so SPIRE's default subject has none.
 */
function leafSubject(dnsNames: readonly string[]): Buffer {
  const first = dnsNames[0];
  return first === undefined || first.length > MAX_COMMON_NAME ? LEAF_SUBJECT : encodeName([['O', 'meshid'], ['CN', first]]);
}
const BASIC_CONSTRAINTS = extension(Oid.basicConstraints, true, basicConstraintsValue(false));
const KEY_USAGE_EC = extension(Oid.keyUsage, true, keyUsageValue(['digitalSignature']));
/** RSA keys may also encipher (TLS 1.2 RSA key exchange); X509-SVID §4.3 allows keyEncipherment. */
const KEY_USAGE_RSA = extension(Oid.keyUsage, true, keyUsageValue(['digitalSignature', 'keyEncipherment']));
const EXT_KEY_USAGE = extension(Oid.extKeyUsage, false, extKeyUsageValue([Oid.serverAuth, Oid.clientAuth]));

/** RFC 1123 host names, optionally with one leading wildcard label. */
const DNS_NAME_RE = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Signs X.509-SVIDs with one intermediate CA: the hot path of the server. Everything that depends only on the issuer
 * (its subject Name bytes, its key identifier as our AKI, the signature algorithm, the parsed KeyObject) is computed
 * once here; each sign() encodes the remaining fields into a TBSCertificate and makes one crypto.sign call.
 *
 * Leaf profile (SPEC-NOTES §3, X509-SVID §4): v3; random positive 16-octet serial; subject O=meshid, plus CN = the
 * first DNS name when it has at most 64 characters (as SPIRE does); SAN exactly one URI (the SPIFFE ID) then the DNS
 * names, non-critical; basicConstraints cA=false critical; keyUsage critical digitalSignature (+ keyEncipherment for
 * RSA keys); extKeyUsage serverAuth + clientAuth; SKI of the leaf key; AKI = the issuer's SKI.
 */
export class LeafSigner {
  /** The issuing intermediate, parsed. */
  readonly issuer: ParsedCertificate;
  private readonly signer: CertificateSigner;
  private readonly authorityKeyIdentifier: Buffer;
  /** `spiffe://<td>` from the issuer's URI SAN, when it has one: leaves must stay in that trust domain. */
  private readonly trustDomain: string | undefined;

  /** Throws MeshidError when the certificate cannot issue leaves or the key does not match it. */
  constructor(issuerCertDer: Buffer, issuerPrivateKey: KeyObject) {
    const issuer = parseCertificate(issuerCertDer);
    if (!issuer.isCa) throw failedPrecondition(`"${issuer.subject}" is not a CA certificate and cannot sign SVIDs`);
    if (issuer.keyUsage !== undefined && !issuer.keyUsage.includes('keyCertSign')) {
      throw failedPrecondition(`CA "${issuer.subject}" lacks the keyCertSign key usage`);
    }
    if (issuer.subjectKeyId === undefined) {
      throw failedPrecondition(`CA "${issuer.subject}" has no subjectKeyIdentifier, so its leaves could not carry the required AKI`);
    }
    if (!keyMatchesCertificate(issuerPrivateKey, issuerCertDer)) {
      throw invalidArgument(`the private key does not match CA certificate "${issuer.subject}"`);
    }
    this.issuer = issuer;
    this.signer = { key: issuerPrivateKey, algorithm: signatureAlgorithmFor(issuerPrivateKey) };
    this.authorityKeyIdentifier = extension(
      Oid.authorityKeyIdentifier,
      false,
      authorityKeyIdentifierValue(Buffer.from(issuer.subjectKeyId, 'hex')),
    );
    const tdUri = issuer.uriSans.find((u) => u.startsWith('spiffe://'));
    this.trustDomain = tdUri === undefined ? undefined : parseSpiffeId(tdUri).trustDomain;
  }

  get notAfter(): number {
    return this.issuer.notAfter;
  }

  /**
   * Issues one X.509-SVID and returns its DER. Throws MeshidError: invalid_argument for a bad SPIFFE ID, DNS name,
   * key or validity; failed_precondition when notAfter is beyond the issuer's notAfter (never truncated silently).
   */
  sign(req: LeafRequest): Buffer {
    const id = parseSpiffeId(req.spiffeId);
    if (id.path === '') throw invalidArgument(`"${req.spiffeId}" names a trust domain, not a workload: an X.509-SVID needs a path`);
    if (this.trustDomain !== undefined && id.trustDomain !== this.trustDomain) {
      throw invalidArgument(`"${req.spiffeId}" is not in trust domain "${this.trustDomain}" of this CA`);
    }
    const dnsNames = req.dnsNames ?? [];
    for (const d of dnsNames) {
      if (typeof d !== 'string' || d.length > 253 || !DNS_NAME_RE.test(d)) throw invalidArgument(`DNS name "${String(d)}" is not a valid host name`);
    }
    checkValidity(req.notBefore, req.notAfter);
    checkWithinIssuer(req.notAfter, this.issuer.notAfter, 'X.509-SVID');

    const key = toPublicKey(req.publicKey);
    const { isRsa } = checkSubjectPublicKey(key);
    const spki = encodeSpki(key);

    return buildCertificate(
      {
        issuerName: this.issuer.structure.subjectName,
        subjectName: leafSubject(dnsNames),
        notBefore: req.notBefore,
        notAfter: req.notAfter,
        spki,
        extensions: [
          BASIC_CONSTRAINTS,
          isRsa ? KEY_USAGE_RSA : KEY_USAGE_EC,
          EXT_KEY_USAGE,
          extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(keyIdentifierOfSpki(spki))),
          this.authorityKeyIdentifier,
          extension(Oid.subjectAltName, false, subjectAltNameValue([id.id], dnsNames)),
        ],
      },
      this.signer,
    );
  }
}

function toPublicKey(k: KeyObject | Buffer): KeyObject {
  if (Buffer.isBuffer(k)) {
    try {
      return decodeSpki(k);
    } catch (err) {
      throw invalidArgument('public key is not a valid SubjectPublicKeyInfo', err);
    }
  }
  if (k.type === 'public') return k;
  if (k.type === 'private') return createPublicKey(k);
  throw invalidArgument('a secret key cannot be certified');
}
