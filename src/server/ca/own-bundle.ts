import { verifyCaChain } from '../../common/x509/chain-verification.js';
import type { AuthorityState, OwnBundleRecord } from './ca-journal.js';
import { isSelfIssued, type LoadedAuthority } from './loaded-authority.js';

/**
 * The trust anchors a root's chains end at, as the bundle publishes them: a self-issued root itself; a root an
 * upstream PKI issued is no trust anchor, so the PKI's roots recorded with it stand in for it.
 */
export function trustAnchorsOf(root: LoadedAuthority): Buffer[] {
  if (root.cert === undefined) return [];
  return isSelfIssued(root.cert) ? [root.cert.der] : (root.record.upstreamAnchorsDer ?? []);
}

/**
 * Roots and JWT keys that are prepared, active, or retired but still needed: everything a peer may need to verify.
 * Tainted JWT keys are left out at once. Today's --upstream-bundle (`upstreamBundleDer`) is published too. The
 * sequence is left 0: the caller numbers it once it knows whether the content changed.
 */
export function ownBundleRecord(
  trustDomain: string,
  authorities: readonly LoadedAuthority[],
  state: ReadonlyMap<string, AuthorityState>,
  upstreamBundleDer: readonly Buffer[],
  now: number,
): OwnBundleRecord {
  const live = authorities
    .filter((a) => a.record.notAfter > now && !(a.record.kind === 'jwt' && state.get(a.record.id) === 'tainted'))
    .sort((a, b) => a.record.notBefore - b.record.notBefore || a.record.id.localeCompare(b.record.id));
  return {
    trustDomain,
    x509Authorities: x509Anchors(live, upstreamBundleDer, now),
    jwtAuthorities: live
      .filter((a) => a.record.kind === 'jwt')
      .map((a) => ({ kid: a.record.keyId, publicKeyPem: a.record.publicKeyPem as string, notAfter: a.record.notAfter })),
    sequence: 0,
    updatedAt: now,
  };
}

/** The X.509 part of ownBundleRecord: the anchors of the live roots, then today's --upstream-bundle, each once. */
function x509Anchors(authorities: readonly LoadedAuthority[], upstreamBundleDer: readonly Buffer[], now: number): Buffer[] {
  return [...authorities.filter((a) => a.record.kind === 'root' && a.record.notAfter > now).flatMap(trustAnchorsOf), ...upstreamBundleDer].filter(
    (der, i, all) => all.findIndex((d) => d.equals(der)) === i,
  );
}

/**
 * The anchor that `root`'s chains still verify against once `root` has left the bundle, if any: the PKI root of an
 * upstream CA that also anchors another of `authorities` (the caller leaves out whatever leaves with `root`), or is
 * in today's --upstream-bundle (a self-issued root is normally its own and only anchor). The agent API's TLS handshake
 * verifies against the bundle alone, so it goes on accepting those chains as long as such an anchor is published. A
 * tainted root keeping the anchor counts: until it is revoked too, the anchor stays, and so does every chain under it.
 */
export function anchorOutliving(
  root: LoadedAuthority,
  authorities: readonly LoadedAuthority[],
  upstreamBundleDer: readonly Buffer[],
  now: number,
): Buffer | undefined {
  if (root.cert === undefined) return undefined;
  const chain = [root.cert.der, ...(root.record.upstreamChainDer ?? [])];
  const remaining = x509Anchors(authorities.filter((a) => a !== root), upstreamBundleDer, now);
  return remaining.find((anchor) => {
    try {
      verifyCaChain(chain, [anchor], now);
      return true;
    } catch {
      return false;
    }
  });
}

/** Whether two bundles publish the same authorities (sequence and time aside). */
export function sameBundleContent(a: OwnBundleRecord, b: OwnBundleRecord): boolean {
  return (
    a.x509Authorities.length === b.x509Authorities.length &&
    a.x509Authorities.every((d, i) => d.equals(b.x509Authorities[i]!)) &&
    a.jwtAuthorities.length === b.jwtAuthorities.length &&
    a.jwtAuthorities.every((k, i) => k.kid === b.jwtAuthorities[i]!.kid)
  );
}
