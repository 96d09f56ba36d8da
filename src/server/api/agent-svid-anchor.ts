import { createHash } from 'node:crypto';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';
import { verifyParsedChain } from '../../common/x509/chain-verification.js';

/** What the check needs of the CA manager: the bundle as published now, and the CA certificates above an SVID. */
export interface SvidIssuers {
  x509Bundle(): { x509Authorities: readonly Buffer[]; sequence: number };
  /** For each of the server's intermediates with this subject key ID: the intermediate, then the CAs above it. */
  issuerChains(authorityKeyId: string): Buffer[][];
}

/** Far above the agents (two SVIDs each) one server serves; a bound only against certificates that come and go. */
const MAX_REMEMBERED = 100_000;

/**
 * By buffer: a call checks the same leaf (the presented-certificates memo hands out one object per DER) and the same
 * journal intermediate up to three times, and each hash costs ~1 us.
 */
const fingerprints = new WeakMap<Buffer, string>();

function fingerprint(der: Buffer): string {
  let known = fingerprints.get(der);
  if (known === undefined) {
    known = createHash('sha256').update(der).digest('base64');
    fingerprints.set(der, known);
  }
  return known;
}

/**
 * Whether an agent SVID presented on a connection still chains to the own trust bundle. The TLS layer checks the
 * chain at the handshake only, and an agent's connection lives as long as it answers keepalives: once `ca revoke`
 * has taken its root out of the bundle, an agent that kept its connection open would go on signing and renew itself
 * onto the new root, when the revoke is meant to cut it off. grpc-js hands the handler the leaf alone, so the chain
 * above it is rebuilt from the CA journal; the leaf must be signed by one of the server's own intermediates (with
 * `--upstream-bundle`, another CA under the same upstream roots could otherwise present an agent's URI and serial).
 *
 * Two answers are kept: which intermediate signed a leaf (it never changes), and whether an intermediate chains to
 * the bundle of a given sequence. A call costs a hash, a look at the journal's few intermediates and two lookups; a
 * bundle change costs one chain verification per intermediate, not one per connected agent.
 */
export class AgentSvidAnchor {
  /** Leaf fingerprint → the intermediate that signed it. */
  private readonly signedBy = new Map<string, Buffer>();
  /** Intermediate fingerprint and how many CAs the journal lists above it → whether it chained to the bundle of `sequence`. */
  private readonly anchored = new Map<string, { sequence: number; ok: boolean }>();

  constructor(private readonly issuers: SvidIssuers) {}

  chainsToBundle(cert: ParsedCertificate, now: number): boolean {
    const chain = this.issuingChain(cert, now);
    if (chain === undefined) return false;
    const bundle = this.issuers.x509Bundle();
    // The CAs above an intermediate are the journal's now, not those of the leaf's first call: a revoked upstream CA
    // leaves them (its PKI root may stay published, anchoring a tainted sibling), as it has after a restart.
    const key = `${fingerprint(chain[0]!)} ${chain.length}`;
    const known = this.anchored.get(key);
    if (known?.sequence === bundle.sequence) return known.ok;
    let ok: boolean;
    try {
      verifyParsedChain(parseCertificate(chain[0]!), chain.slice(1), bundle.x509Authorities, now);
      ok = true;
    } catch {
      ok = false;
    }
    if (this.anchored.size >= MAX_REMEMBERED) this.anchored.clear();
    this.anchored.set(key, { sequence: bundle.sequence, ok });
    return ok;
  }

  /**
   * Whether one of the server's own intermediates signed `cert`, whatever the bundle now says: what makes the agent
   * ID in it the server's word (agent-call-gate.ts keys budgets by it). Memoized as chainsToBundle's first step is.
   */
  signedByServer(cert: ParsedCertificate, now: number): boolean {
    return this.issuingChain(cert, now) !== undefined;
  }

  /** The server's intermediate (with the CAs above it) whose key signed `cert`, or undefined when none did. */
  private issuingChain(cert: ParsedCertificate, now: number): Buffer[] | undefined {
    const aki = cert.authorityKeyId;
    if (aki === undefined) return undefined;
    const key = fingerprint(cert.der);
    const known = this.signedBy.get(key);
    if (known !== undefined) return this.issuers.issuerChains(aki).find((c) => c[0]!.equals(known));
    // Whether the leaf has expired is authenticateAgent's question (with its own message); a leaf seen again after
    // the memo was cleared must not read as unanchored for it. Nor is one not yet valid by this clock (stepped back
    // after signing it) another CA's: that passes, where another CA's calls for a new join token.
    const at = Math.max(cert.notBefore, Math.min(now, cert.notAfter - 1));
    const chain = this.issuers.issuerChains(aki).find((c) => {
      try {
        // The intermediate as the only anchor: checks the leaf's signature and names against it alone.
        verifyParsedChain(cert, [], [c[0]!], at);
        return true;
      } catch {
        return false;
      }
    });
    if (chain === undefined) return undefined;
    if (this.signedBy.size >= MAX_REMEMBERED) this.signedBy.clear();
    this.signedBy.set(key, chain[0]!);
    return chain;
  }
}
