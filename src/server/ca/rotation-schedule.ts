import { nextAuthorityDecision, type Lifetime } from '../../common/rotation.js';
import type { AuthorityKind } from './ca-journal.js';
import type { LoadedAuthority } from './loaded-authority.js';
import type { RotationSettings } from './rotation-plan.js';

type ScheduleSettings = Pick<RotationSettings, 'intermediateTtlMs' | 'longestX509SvidTtlMs' | 'jwtSvidTtlMs' | 'rootActivationDelayMs'>;

/**
 * The next instant at which a rotation decision (rotation-plan.ts) falls due for these authorities, or Infinity when
 * none will: the CA (ca-manager.ts) arms its one timer for exactly then instead of polling.
 */
export function nextRotationDecisionAt(authorities: ReadonlyMap<string, LoadedAuthority>, settings: ScheduleSettings, now: number): number {
  let next = Number.POSITIVE_INFINITY;
  for (const a of authorities.values()) {
    if (a.record.state === 'active') {
      const prepared = hasPrepared(authorities, a.record.kind, a.record.datacenter);
      next = Math.min(next, nextAuthorityDecision(now, a.record, childTtl(a.record.kind, settings), prepared));
    }
    if (a.record.state === 'old' || a.record.state === 'tainted') next = Math.min(next, a.record.notAfter + 1);
    // A prepared root activates once published for rootActivationDelayMs: a decision of its own, not the active root's.
    if (a.record.kind === 'root' && a.record.state === 'prepared') next = Math.min(next, a.record.createdAt + settings.rootActivationDelayMs);
  }
  return next;
}

/**
 * When a prepared root takes over from `active` (rotation-plan.ts, planRoot), short of `ca activate`: once published
 * for rootActivationDelayMs, or sooner at the first instant `active` could no longer cover a whole intermediate
 * (shouldActivateSuccessor). Without an active root it takes over at the next rotation: `now`.
 */
export function preparedRootActivatesAt(
  prepared: { createdAt: number },
  active: Lifetime | undefined,
  settings: Pick<ScheduleSettings, 'intermediateTtlMs' | 'rootActivationDelayMs'>,
  now: number,
): number {
  if (active === undefined) return now;
  return Math.min(prepared.createdAt + settings.rootActivationDelayMs, Math.floor(active.notAfter - settings.intermediateTtlMs) + 1);
}

/** The longest life an authority of `kind` must be able to cover for what it signs. */
function childTtl(kind: AuthorityKind, settings: ScheduleSettings): number {
  switch (kind) {
    case 'root':
      return settings.intermediateTtlMs;
    case 'intermediate':
      return settings.longestX509SvidTtlMs;
    case 'jwt':
      return settings.jwtSvidTtlMs;
  }
}

function hasPrepared(authorities: ReadonlyMap<string, LoadedAuthority>, kind: AuthorityKind, datacenter: string): boolean {
  for (const a of authorities.values()) {
    if (a.record.kind === kind && a.record.datacenter === datacenter && a.record.state === 'prepared') return true;
  }
  return false;
}
