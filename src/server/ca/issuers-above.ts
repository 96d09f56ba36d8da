import { isSelfIssued, type LoadedAuthority } from './loaded-authority.js';

/**
 * What a chain must carry above an intermediate: nothing under a self-signed root (the bundle has it); under a CA
 * an upstream PKI issued, that CA and the issuers above it recorded with it. Kept on the intermediate at first use
 * (LoadedAuthority.issuersAbove); whoever removes a root drops what is kept.
 */
export function issuersAbove(intermediate: LoadedAuthority, authorities: ReadonlyMap<string, LoadedAuthority>): Buffer[] {
  if (intermediate.issuersAbove !== undefined) return intermediate.issuersAbove;
  const root = issuingRoot(intermediate, [...authorities.values()]);
  let above: Buffer[] = [];
  if (root?.cert !== undefined && !isSelfIssued(root.cert)) above = [root.cert.der, ...(root.record.upstreamChainDer ?? [])];
  intermediate.issuersAbove = above;
  return above;
}

/**
 * The root certificate an intermediate's chain goes up through. An upstream CA renewed with the same key is two
 * roots with one key identifier, and either signature verifies; the chain needs the one still valid for the whole
 * life of the intermediate, or the chain breaks when the older certificate expires.
 */
function issuingRoot(intermediate: LoadedAuthority, authorities: LoadedAuthority[]): LoadedAuthority | undefined {
  const cert = intermediate.cert;
  if (cert?.authorityKeyId === undefined) return undefined;
  const candidates = authorities.filter(
    (r) => r.record.kind === 'root' && r.cert?.subjectKeyId === cert.authorityKeyId && r.cert?.subject === cert.issuer,
  );
  const covering = candidates.filter((r) => r.cert!.notBefore <= cert.notBefore && r.cert!.notAfter >= cert.notAfter);
  const pool = covering.length > 0 ? covering : candidates;
  return pool.reduce<LoadedAuthority | undefined>((best, r) => (best === undefined || r.cert!.notAfter > best.cert!.notAfter ? r : best), undefined);
}
