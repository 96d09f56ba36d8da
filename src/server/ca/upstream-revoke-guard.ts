import { failedPrecondition } from '../../common/errors.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { AuthorityState } from './ca-journal.js';
import type { LoadedAuthority } from './loaded-authority.js';
import { anchorOutliving } from './own-bundle.js';

/**
 * A root an upstream PKI issued is not itself in the bundle: the PKI's root is. While that PKI root stays published
 * (it anchors another root too, or is in today's --upstream-bundle), every chain through the revoked root would go
 * on verifying everywhere, the agent API's TLS handshake included, and only the per-call check, which rebuilds
 * chains from the journal, would lose it: after a restart it refused agents whose handshake passed. So the revoke
 * is refused, as SPIRE refuses `localauthority x509 revoke` under an UpstreamAuthority; the root stays tainted
 * (agents keep re-signing away from it) and leaves with its last intermediate. A tainted root keeping the PKI root
 * counts too (a revoke that stops nothing would be taken for one that did), but the refusal names it: revoked
 * together in one request (`group`), a compromised CA and its renewal under one PKI root take it out.
 */
export function refuseRevokeThatKeepsTrust(
  root: LoadedAuthority,
  group: readonly LoadedAuthority[],
  live: readonly LoadedAuthority[],
  state: ReadonlyMap<string, AuthorityState>,
  upstreamBundle: readonly Buffer[],
  now: number,
): void {
  const anchor = anchorOutliving(root, live, upstreamBundle, now);
  if (anchor === undefined) return;
  const anchored = live.filter((a) => a.record.kind === 'root' && a.record.upstreamAnchorsDer?.some((d) => d.equals(anchor)));
  const keeper = anchored.find((a) => state.get(a.record.id) !== 'tainted') ?? anchored[0];
  if (anchored.length > 0 && keeper === anchored.find((a) => state.get(a.record.id) === 'tainted') && !upstreamBundle.some((d) => d.equals(anchor))) {
    // Only tainted roots keep it: the group this revoke needs.
    const ids = [...group, ...anchored].map((a) => a.record.id);
    const others = anchored.map((a) => a.record.id).join(', ');
    throw failedPrecondition(
      `root ${root.record.id} was issued by the upstream PKI, and its chains end at "${parseCertificate(anchor).subject}", which stays in the bundle ` +
        `while tainted root(s) ${others} are anchored there too: revoked without them, ${root.record.id} would stop nothing trusting the SVIDs under it. ` +
        `Revoke them together, in one commit that takes that PKI root out: meshid-server ca revoke ${ids.map((id) => `--id ${id}`).join(' ')}`,
    );
  }
  const keptBy = upstreamBundle.some((d) => d.equals(anchor))
    ? 'it is in --upstream-bundle (upstream_bundle)'
    : `it anchors ${keeper === undefined ? 'another root' : `root ${keeper.record.id} (${state.get(keeper.record.id)})`} too`;
  const lastIntermediateEnd = Math.max(
    ...live.filter((a) => a.record.kind === 'intermediate' && a.cert?.authorityKeyId === root.cert?.subjectKeyId).map((a) => a.record.notAfter),
  );
  const leaves = Number.isFinite(lastIntermediateEnd) ? `when the last intermediate under it expires (${new Date(lastIntermediateEnd).toISOString()})` : 'at the next rotation';
  throw failedPrecondition(
    `root ${root.record.id} was issued by the upstream PKI, and its chains end at "${parseCertificate(anchor).subject}", which stays in the bundle without it (${keptBy}): ` +
      'revoking it would stop nothing trusting the SVIDs under it, this server included. It stays tainted, so agents keep re-signing away from it, ' +
      `and leaves by itself ${leaves}; --force does not change this. To stop trusting that PKI root sooner, take it out of --upstream-bundle and taint ` +
      'every root anchored there (the upstream CA the server runs with must then come from another PKI root: restart with its files), then revoke them together',
  );
}
