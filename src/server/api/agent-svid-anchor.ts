import { createHash } from 'node:crypto';
import { verifyParsedChain, type ParsedCertificate } from '../../common/x509/certificate.js';

/** What the check needs of the CA manager: the bundle as published now, and the CA certificates above an SVID. */
export interface SvidIssuers {
  x509Bundle(): { x509Authorities: readonly Buffer[]; sequence: number };
  issuerChains(authorityKeyId: string): Buffer[][];
}

/** Far above the agents (two SVIDs each) one server serves; a bound only against certificates that come and go. */
const MAX_REMEMBERED = 100_000;

/**
 * Whether an agent SVID presented on a connection still chains to the own trust bundle. The TLS layer checks the
 * chain at the handshake only, and an agent's connection lives as long as it answers keepalives: once `ca revoke`
 * has taken its root out of the bundle, an agent that kept its connection open would go on signing and renew itself
 * onto the new root, when the revoke is meant to cut it off. grpc-js hands the handler the leaf alone, so the chain
 * above it is rebuilt from the CA journal. Each certificate's answer is kept until the bundle changes: a call costs a
 * hash and a map lookup, and one chain verification per agent after a bundle change.
 */
export class AgentSvidAnchor {
  /** Fingerprint of a certificate found to chain to the bundle → the bundle sequence it chained to. */
  private readonly anchored = new Map<string, number>();

  constructor(private readonly issuers: SvidIssuers) {}

  chainsToBundle(cert: ParsedCertificate, now: number): boolean {
    const bundle = this.issuers.x509Bundle();
    const fingerprint = createHash('sha256').update(cert.der).digest('base64');
    if (this.anchored.get(fingerprint) === bundle.sequence) return true;
    const aki = cert.authorityKeyId;
    if (aki === undefined) return false;
    const anchored = this.issuers.issuerChains(aki).some((issuers) => {
      try {
        verifyParsedChain(cert, issuers, bundle.x509Authorities, now);
        return true;
      } catch {
        return false;
      }
    });
    if (!anchored) return false;
    if (this.anchored.size >= MAX_REMEMBERED) this.anchored.clear();
    this.anchored.set(fingerprint, bundle.sequence);
    return true;
  }
}
