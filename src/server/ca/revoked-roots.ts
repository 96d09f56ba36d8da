import { parseCertificate } from '../../common/x509/certificate.js';
import { verifyCaChain } from '../../common/x509/chain-verification.js';
import type { RevokedRootRecord } from './ca-journal.js';
import { isSelfIssued, type LoadedAuthority } from './loaded-authority.js';

/**
 * Whether `root`'s chains end at `anchor`: a self-issued root is its own anchor; a CA an upstream PKI issued verifies,
 * through the issuers recorded with it, against that PKI root.
 */
export function rootChainsTo(root: LoadedAuthority, anchor: Buffer, now: number): boolean {
  if (root.cert === undefined) return false;
  if (isSelfIssued(root.cert)) return root.cert.der.equals(anchor);
  try {
    verifyCaChain([root.cert.der, ...(root.record.upstreamChainDer ?? [])], [anchor], now);
    return true;
  } catch {
    return false;
  }
}

/**
 * What `ca revoke` keeps of a root it takes out. Its anchors are those its chain ends at, not every root of the
 * --upstream-bundle it was taken on with: a PKI root it never chained to anchors nothing it signed. Should none verify
 * (nothing a revoke sees, since the root is live), all recorded anchors are kept: a warning too many beats none.
 */
export function revokedRootRecord(root: LoadedAuthority, now: number): RevokedRootRecord {
  const cert = root.cert!;
  const recorded = isSelfIssued(cert) ? [cert.der] : (root.record.upstreamAnchorsDer ?? []);
  const chainedTo = recorded.filter((anchor) => rootChainsTo(root, anchor, now));
  return {
    id: root.record.id,
    subject: cert.subject,
    certFingerprint: cert.fingerprintSha256,
    subjectKeyId: cert.subjectKeyId,
    anchorsDer: chainedTo.length > 0 ? chainedTo : recorded,
    revokedAt: now,
  };
}

/** A published trust anchor that a revoked root's chains end at. */
export interface RepublishedAnchor {
  revoked: RevokedRootRecord;
  anchorDer: Buffer;
}

/**
 * Each pair of a revoked root and a published anchor its chains end at: one of its recorded anchors, or that anchor
 * re-issued (a PKI renewing its root with the same name and key, new dates or serial): chains verify by name and
 * signature, so everything the revoked CA's key signed verifies against the re-issued root as it did against the old.
 * `anchorDer` is the published certificate.
 */
export function republishedAnchors(revoked: readonly RevokedRootRecord[], published: readonly Buffer[]): RepublishedAnchor[] {
  return revoked.flatMap((r) =>
    published.filter((p) => r.anchorsDer.some((a) => a.equals(p) || sameNameAndKey(a, p))).map((anchorDer) => ({ revoked: r, anchorDer })),
  );
}

/** Whether two certificates have the same subject name and public key: a verifier takes either for the other as an issuer. */
function sameNameAndKey(a: Buffer, b: Buffer): boolean {
  try {
    const ca = parseCertificate(a);
    const cb = parseCertificate(b);
    return ca.structure.subjectName.equals(cb.structure.subjectName) && ca.publicKey.equals(cb.publicKey);
  } catch {
    return false;
  }
}

/**
 * The published anchors the agent API's TLS layer leaves out: those of a revoked root that no root of the journal
 * chains to. Every agent SVID is signed by one of the server's intermediates under a journal root, so no agent the
 * server signed can need such an anchor, and an agent certificate that does chain to it can only come from the
 * revoked CA's key or another CA of that PKI: the per-call check refuses both, and leaving the anchor out refuses
 * them at the handshake too. An anchor a journal root still chains to stays, or its agents would be cut off.
 */
export function anchorsForRevokedRootsOnly(
  republished: readonly RepublishedAnchor[],
  roots: readonly LoadedAuthority[],
  now: number,
): Buffer[] {
  return republished
    .map((r) => r.anchorDer)
    .filter((anchor, i, all) => all.findIndex((a) => a.equals(anchor)) === i)
    .filter((anchor) => !roots.some((root) => root.record.kind === 'root' && rootChainsTo(root, anchor, now)));
}

/**
 * The error-level warning for a revoked root's anchor published again: what is trusted again, why it is published,
 * what the agent API does about it, and how to stop it. `inUpstreamBundle`: today's --upstream-bundle lists it.
 * `anchoredRoots`: IDs of journal roots that chain to it. `listingRoots`: IDs of journal roots taken on with an
 * --upstream-bundle that listed it, which publish it while they live (own-bundle.ts trustAnchorsOf).
 */
export function republishedAnchorWarning(
  r: RepublishedAnchor,
  inUpstreamBundle: boolean,
  anchoredRoots: readonly string[],
  listingRoots: readonly string[],
): string {
  const listingOnly = listingRoots.filter((id) => !anchoredRoots.includes(id));
  const anchor = parseCertificate(r.anchorDer);
  const why = [
    ...(inUpstreamBundle ? ['it is in --upstream-bundle (upstream_bundle)'] : []),
    ...(anchoredRoots.length > 0 ? [`root(s) ${anchoredRoots.join(', ')} of the CA journal chain to it`] : []),
    ...(listingOnly.length > 0 ? [`root(s) ${listingOnly.join(', ')} were taken on with an --upstream-bundle listing it`] : []),
  ].join(', and ');
  const agents =
    anchoredRoots.length === 0
      ? "The agent API's TLS layer does not accept agent certificates under it (no root of the journal chains to it). "
      : "The agent API's TLS layer still accepts agent certificates under it (roots of the journal chain to it); each call refuses those the revoked CA's key signed. ";
  const stop =
    anchoredRoots.length === 0
      ? `take it out of --upstream-bundle and restart (a CA of yours that needs it must be trusted another way)${listingOnly.length > 0 ? `; it stays published until root(s) ${listingOnly.join(', ')} leave the journal` : ''}`
      : `restart with an upstream CA from another PKI root and an --upstream-bundle without it, then taint and revoke root(s) ${anchoredRoots.join(', ')} together`;
  return (
    `the trust bundle publishes "${anchor.subject}" (sha256 ${anchor.fingerprintSha256}) again, the trust anchor of root ${r.revoked.id} ` +
    `("${r.revoked.subject}", sha256 ${r.revoked.certFingerprint}), revoked ${new Date(r.revoked.revokedAt).toISOString()}: every workload ` +
    `trusts certificates the revoked CA's key signs again, and that key may be compromised. It is published because ${why}. ${agents}` +
    `To stop trusting it, ${stop}`
  );
}
