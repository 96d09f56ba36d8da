import type { KeyObject } from 'node:crypto';
import type { ParsedCertificate } from '../../common/x509/certificate.js';
import type { LeafSigner } from '../../common/x509/leaf-signer.js';
import type { CaRecord } from './ca-journal.js';

/** An authority of the CA journal as the server holds it: its row, its key, and for X.509 CAs what signing needs. */
export interface LoadedAuthority {
  record: CaRecord;
  key: KeyObject;
  cert?: ParsedCertificate;
  signer?: LeafSigner;
  /** An intermediate's issuers that chains must carry (its root when an upstream PKI issued that); at first use. */
  issuersAbove?: Buffer[];
}

/** A root meshid or the operator made itself (issuer = subject), as opposed to a CA an upstream PKI issued. */
export function isSelfIssued(cert: ParsedCertificate): boolean {
  return cert.structure.issuerName.equals(cert.structure.subjectName);
}

/** The subject createRootCertificate gives every root meshid makes. */
const MESHID_ROOT_SUBJECT = /^O=meshid, CN=meshid root CA( |$)/;

/**
 * Whether a root is an upstream CA (--upstream-ca-cert) whose key the server copied, rather than one meshid made: the
 * journal says so for roots made since schema version 6. Older rows are judged by the certificate: one with upstream
 * anchors, one an upstream PKI issued, or a self-signed one without meshid's root subject came from upstream files
 * (meshid only ever makes self-signed roots with that subject). The one case this misjudges, an upstream CA that is
 * itself a meshid root, keeps the behaviour the server had before it kept this record: it is treated as meshid's.
 */
export function rootFromUpstreamCa(root: LoadedAuthority): boolean {
  if (root.record.fromUpstreamCa !== undefined) return root.record.fromUpstreamCa;
  if (root.record.upstreamAnchorsDer !== undefined) return true;
  if (root.cert === undefined) return false;
  return !isSelfIssued(root.cert) || !MESHID_ROOT_SUBJECT.test(root.cert.subject);
}
