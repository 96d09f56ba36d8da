/**
 * Rotation decisions as pure functions of `now`, shared by the server's authorities and the agent's SVIDs.
 * A credential with a successor is prepared at half its life and handed over when it could no longer cover a full
 * lifetime of what it signs; a leaf credential (SVID) is renewed at half its life (± jitter), so at once when it is
 * first looked at past that point (a restart from stored state).
 */
export interface Lifetime {
  readonly notBefore: number;
  readonly notAfter: number;
}

function halfLife(l: Lifetime): number {
  return l.notBefore + (l.notAfter - l.notBefore) / 2;
}

/** An authority's successor is prepared (and published) once half of the authority's life has passed. */
export function shouldPrepareSuccessor(now: number, active: Lifetime): boolean {
  return now >= halfLife(active);
}

/** The successor takes over when the active authority could no longer cover a full child lifetime. */
export function shouldActivateSuccessor(now: number, active: Lifetime, childTtlMs: number): boolean {
  return now + childTtlMs > active.notAfter;
}

/** The next instant at which either decision above changes for this authority. */
export function nextAuthorityDecision(now: number, active: Lifetime, childTtlMs: number, prepared: boolean): number {
  const candidates = [active.notAfter - childTtlMs + 1];
  if (!prepared) candidates.push(halfLife(active));
  const future = candidates.filter((t) => t > now);
  return future.length > 0 ? Math.min(...future) : now;
}

/**
 * When a leaf SVID should be renewed: at half its life shifted by `jitter` (a fraction in [-0.1, 0.1] chosen once per
 * SVID so a fleet spreads out), so at 60 % of its life at the latest. The 90 % bound (latestRenewalTime) only guards a
 * wider jitter; the server's own SVID waits for it on purpose while it chains to a tainted root (server-svid.ts).
 */
export function renewalTime(l: Lifetime, jitter: number): number {
  const span = l.notAfter - l.notBefore;
  const j = Math.max(-0.1, Math.min(0.1, jitter));
  return Math.min(l.notBefore + span * (0.5 + j), latestRenewalTime(l));
}

/**
 * The part of a leaf's life its holder has it for: from when it asked for it (`since`, on the holder's clock) to its
 * notAfter. The signer backdates notBefore (meshid's server by 10 s, as SPIRE's) for clocks running behind its own, so
 * half of notBefore..notAfter falls before the leaf even arrives once the TTL is 10 s or less: renewed "at half-life",
 * it would be renewed again the moment it arrived, for ever. A notBefore after `since` (a signer whose clock runs
 * ahead) is kept: the leaf is no use before it.
 */
export function heldLifetime(l: Lifetime, since: number): Lifetime {
  return { notBefore: Math.min(Math.max(l.notBefore, since), l.notAfter), notAfter: l.notAfter };
}

/** The latest a leaf is renewed: 90 % of its life, leaving the rest for a failed try to be retried. */
export function latestRenewalTime(l: Lifetime): number {
  return l.notBefore + (l.notAfter - l.notBefore) * 0.9;
}
