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
