import { formatDuration } from '../../common/duration.js';
import { rootFromUpstreamCa, type LoadedAuthority } from './loaded-authority.js';

/** What the notice needs of the CA settings. */
export interface SwitchOffSettings {
  rootActivationDelayMs: number;
  intermediateTtlMs: number;
}

/**
 * What a start without --upstream-ca-cert/--upstream-ca-key tells the operator about upstream CAs still in the
 * journal, one sentence per root: while such a root is listed the server holds a copy of its key in ca/keys, and an
 * operator who removed the flags expects both to go (SPIRE goes back to a self-signed CA). Says which root signs until
 * when, when the key copy leaves by itself, and the `ca taint`/`ca revoke` that removes it sooner. Undefined when no
 * upstream CA is left. `keyFile` names a root's key file in the key store.
 */
export function upstreamSwitchOffNotice(
  authorities: readonly LoadedAuthority[],
  settings: SwitchOffSettings,
  keyFile: (keyId: string) => string,
): string | undefined {
  const roots = authorities.filter((a) => a.record.kind === 'root');
  const upstream = roots.filter((r) => rootFromUpstreamCa(r));
  if (upstream.length === 0) return undefined;
  const successor = roots.find((r) => r.record.state === 'prepared' && !rootFromUpstreamCa(r));
  const takeover = successor === undefined ? undefined : successor.record.createdAt + settings.rootActivationDelayMs;
  const sentences = upstream.map((root) => {
    const id = root.record.id;
    const named = `root ${id} ("${root.cert?.subject ?? ''}") is an upstream CA an earlier start was given, and ${keyFile(root.record.keyId)} is a copy of its key`;
    const lastChild = lastIntermediateEnd(root, authorities);
    const leaves = lastChild === undefined ? 'at the next rotation' : `when the last intermediate it signed expires (${iso(lastChild)})`;
    switch (root.record.state) {
      case 'active':
        return (
          `${named}. meshid's own root ${successor?.record.id ?? '(none yet)'}, published since ${successor ? iso(successor.record.createdAt) : 'now'}, ` +
          `takes over signing intermediates at ${takeover === undefined ? 'its activation' : iso(takeover)} (root_activation_delay ${formatDuration(settings.rootActivationDelayMs)}); ` +
          `until then ${id} signs them. The key copy is deleted when the last intermediate ${id} signed expires (up to ${formatDuration(settings.intermediateTtlMs)} after the takeover); ` +
          `to delete it sooner, after the takeover run meshid-server ca taint --id ${id} (agents re-sign under the new root) and then meshid-server ca revoke --id ${id}. ` +
          'To keep the upstream CA instead, restart with its flags: the prepared root is then dropped'
        );
      case 'tainted':
        return `${named}. It is tainted and signs nothing; the key copy is deleted ${leaves}, or by meshid-server ca revoke --id ${id} once agents have re-signed`;
      default:
        return `${named}. It no longer signs intermediates; the key copy is deleted ${leaves}, or sooner by meshid-server ca taint --id ${id} and then, once agents have re-signed, meshid-server ca revoke --id ${id}`;
    }
  });
  return `started without --upstream-ca-cert/--upstream-ca-key: ${sentences.join('. ')}`;
}

function lastIntermediateEnd(root: LoadedAuthority, authorities: readonly LoadedAuthority[]): number | undefined {
  const ends = authorities
    .filter((a) => a.record.kind === 'intermediate' && root.cert?.subjectKeyId !== undefined && a.cert?.authorityKeyId === root.cert.subjectKeyId)
    .map((a) => a.record.notAfter);
  return ends.length === 0 ? undefined : Math.max(...ends);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
