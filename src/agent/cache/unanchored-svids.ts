import { verifyCaChain } from '../../common/x509/chain-verification.js';
import type { WorkloadSvid } from './workload-cache.js';

/**
 * The SVIDs among `svids` whose issuers no longer chain to `roots` (the own bundle's X.509 authorities), as of `now`.
 * Checked once per distinct intermediate: SVIDs share them.
 */
export function unanchoredSvids(svids: readonly WorkloadSvid[], roots: readonly Buffer[], now: number): WorkloadSvid[] {
  const anchored = new Map<Buffer, boolean>();
  return svids.filter((s) => {
    const issuer = s.chain[1];
    if (issuer === undefined) return false;
    let ok = anchored.get(issuer);
    if (ok === undefined) {
      try {
        // Whether the chain leads to the bundle, not whether this host's clock agrees with the server's: checked
        // within the SVID's own validity (an intermediate a server ahead of this host just made is not yet valid here).
        verifyCaChain(s.chain.slice(1), roots, Math.max(s.notBefore, Math.min(now, s.notAfter)));
        ok = true;
      } catch {
        ok = false;
      }
      anchored.set(issuer, ok);
    }
    return !ok;
  });
}
