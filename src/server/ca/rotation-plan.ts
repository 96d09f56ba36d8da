import { failedPrecondition, invalidArgument, isMeshidError, notFound, type MeshidError } from '../../common/errors.js';
import { shouldActivateSuccessor, shouldPrepareSuccessor } from '../../common/rotation.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { UpstreamCa } from './upstream-ca.js';
import type { AuthorityKind, AuthorityState, CaJournalChange, OwnBundleRecord, RevokedJwtKeyRecord, RevokedRootRecord } from './ca-journal.js';
import { rootFromUpstreamCa, type LoadedAuthority } from './loaded-authority.js';
import { ownBundleRecord } from './own-bundle.js';
import { revokedRootRecord } from './revoked-roots.js';
import { refuseRevokeThatKeepsTrust } from './upstream-revoke-guard.js';

/** Operator actions applied together with the rotation decisions. */
export interface CaAction {
  rotateRoot?: boolean;
  /**
   * `ca activate`: the prepared root with this ID takes over now, as if its activation delay had passed, and signs a
   * new intermediate for every datacenter at once. The ID of the root already active is no change (a retry, or a
   * planned activation that came first).
   */
  activateRoot?: string;
  taint?: string;
  /** Revoked together, in one commit: roots under one upstream PKI root leave it only as a group. */
  revoke?: readonly string[];
}

/** What the rotation decisions need of the CA settings. */
export interface RotationSettings {
  trustDomain: string;
  datacenters: readonly string[];
  intermediateTtlMs: number;
  jwtSvidTtlMs: number;
  /** The longest SVID (workload or agent) an intermediate must be able to cover. */
  longestX509SvidTtlMs: number;
  /** How long a prepared root is published before it signs intermediates. */
  rootActivationDelayMs: number;
  upstreamCa?: UpstreamCa | undefined;
}

/**
 * Makes the authorities a plan decides to create, each in state 'prepared' with its key already on disk: the only
 * I/O a plan does.
 */
export interface AuthorityMaker {
  newRoot(now: number): Promise<LoadedAuthority>;
  newIntermediate(datacenter: string, root: LoadedAuthority, now: number): Promise<LoadedAuthority>;
  newJwtKey(now: number): LoadedAuthority;
}

/**
 * Every rotation decision due at `now`, plus an optional operator action, as one plan: the caller commits its
 * journal change and bundle in one transaction and only then applies it to the authorities in memory.
 */
export async function planRotation(
  authorities: ReadonlyMap<string, LoadedAuthority>,
  action: CaAction,
  settings: RotationSettings,
  make: AuthorityMaker,
  now: number,
): Promise<RotationPlan> {
  const plan = new RotationPlan(authorities, settings, make, now);
  if (action.taint !== undefined) plan.applyTaint(action.taint);
  if (action.revoke !== undefined) plan.applyRevoke(action.revoke);
  plan.dropExpired();
  const activating = action.activateRoot !== undefined && plan.checkActivation(action.activateRoot);
  const activeRoot = await plan.planRoot(action.rotateRoot === true, activating ? action.activateRoot : undefined);
  plan.retireUnservedDatacenters();
  await plan.planIntermediates(activeRoot, activating);
  plan.planJwtKey();
  plan.dropUnusedRoots();
  return plan;
}

/**
 * What keeps one datacenter's intermediate from being made without holding back the rest of a rotation: its root or
 * upstream PKI ends too soon (failed_precondition). Anything else, a key the disk cannot take above all, abandons the
 * whole change (unless an intermediate prepared under the previous root can stand in): committing a taint whose
 * replacement could not be written would leave the datacenter unable to sign.
 */
function datacenterFailure(err: unknown): err is MeshidError {
  return isMeshidError(err, 'failed_precondition');
}

/**
 * A rotation being decided. It works on its own copy of the authorities' states and never changes the loaded
 * authorities' records, so nothing in memory moves until the caller has committed the plan; the authorities it
 * creates (`created`) are new objects, in the state the plan last gave them.
 */
export class RotationPlan {
  /** The loaded authorities and those this plan created. */
  private readonly pool: Map<string, LoadedAuthority>;
  /** Every authority's state as decided so far. */
  private readonly state: Map<string, AuthorityState>;
  /** Authorities this plan created, in order. */
  private readonly staged: LoadedAuthority[] = [];
  /** Authorities leaving the journal, the bundle and the disk. */
  private readonly removed = new Set<string>();
  /** Roots `ca revoke` takes out, as the journal keeps them once they have left. */
  private readonly revoked: RevokedRootRecord[] = [];
  /** JWT keys `ca revoke` takes out, as the journal keeps them once they have left. */
  private readonly revokedJwtKeys: RevokedJwtKeyRecord[] = [];
  /** Datacenters whose intermediate could not be renewed: reported once the rest is committed. */
  private readonly failures: string[] = [];
  /** Prepared roots dropped because they came from the other source (upstream CA or meshid) than the config's. */
  readonly droppedForSource: LoadedAuthority[] = [];

  constructor(
    private readonly loaded: ReadonlyMap<string, LoadedAuthority>,
    private readonly settings: RotationSettings,
    private readonly make: AuthorityMaker,
    readonly now: number,
  ) {
    this.pool = new Map(loaded);
    this.state = new Map([...this.pool].map(([id, a]) => [id, a.record.state]));
  }

  /** `ca taint`: the authority stops signing now; a root takes with it every intermediate it signed that still signs. */
  applyTaint(id: string): void {
    const t = this.pool.get(id);
    if (t === undefined) throw notFound(`no authority with id "${id}" (see ca show)`);
    if (this.state.get(t.record.id) === 'tainted') throw failedPrecondition(`authority ${t.record.id} is already tainted`);
    if (t.record.kind === 'root' && t.cert?.subjectKeyId !== undefined) {
      const upstream = this.settings.upstreamCa;
      // Its replacement would be the same key again, read from the same files.
      if (upstream !== undefined && parseCertificate(upstream.certDer).subjectKeyId === t.cert.subjectKeyId) {
        throw failedPrecondition(
          `authority ${t.record.id} has the key of the upstream CA this server was started with: issue a CA with a new key in the upstream PKI, restart with its files (--upstream-ca-cert/--upstream-ca-key), then taint this one`,
        );
      }
      // A renewal that kept the key: the taint would cover the successor too, and never clear.
      const sibling = [...this.pool.values()].find(
        (a) => a !== t && a.record.kind === 'root' && this.state.get(a.record.id) !== 'tainted' && a.cert?.subjectKeyId === t.cert!.subjectKeyId,
      );
      if (sibling !== undefined) {
        throw failedPrecondition(`authority ${t.record.id} shares its key with root ${sibling.record.id}: replace that root with one of a new key first`);
      }
    }
    this.set(t, 'tainted');
    // Everything a tainted root signed is tainted with it: intermediates are re-issued under a new root (planRoot,
    // planIntermediates).
    if (t.record.kind === 'root') {
      for (const a of this.pool.values()) {
        if (a.record.kind === 'intermediate' && a.cert?.authorityKeyId === t.cert?.subjectKeyId && this.state.get(a.record.id) !== 'old') {
          this.set(a, 'tainted');
        }
      }
    }
  }

  /** `ca revoke`: tainted roots and JWT keys leave the journal and the bundle now, all in this one plan. */
  applyRevoke(ids: readonly string[]): void {
    const group: LoadedAuthority[] = [];
    for (const id of ids) {
      const r = this.pool.get(id);
      if (r === undefined) throw notFound(`no authority with id "${id}" (see ca show)`);
      const st = this.state.get(r.record.id);
      if (st !== 'tainted') {
        throw failedPrecondition(`authority ${r.record.id} is ${st}: only a tainted authority can be revoked (meshid-server ca taint --id ${r.record.id} first)`);
      }
      if (r.record.kind === 'intermediate') {
        throw failedPrecondition(
          `intermediate ${r.record.id} is not in the bundle, so revoking it would change nothing: the SVIDs it signed are trusted through their root; to stop trusting them, taint and revoke that root`,
        );
      }
      group.push(r);
    }
    // Out of the journal and the bundle now: whatever still chains to a revoked root stops verifying. Its tainted
    // intermediates stay listed (they are in no bundle) so agents keep re-signing away from them.
    for (const r of group) this.removed.add(r.record.id);
    for (const r of group) if (r.record.kind === 'root') this.refuseRevokeThatKeepsTrust(r, group);
    for (const r of group) if (r.record.kind === 'root') this.revoked.push(revokedRootRecord(r, this.now));
    for (const r of group) if (r.record.kind === 'jwt') this.revokedJwtKeys.push({ id: r.record.id, keyId: r.record.keyId, revokedAt: this.now });
  }

  /** refuseRevokeThatKeepsTrust (upstream-revoke-guard.ts) over the authorities this plan keeps. */
  private refuseRevokeThatKeepsTrust(root: LoadedAuthority, group: readonly LoadedAuthority[]): void {
    const live = [...this.pool.values()].filter((a) => !this.removed.has(a.record.id));
    const upstreamBundle = this.settings.upstreamCa?.bundleDer ?? [];
    refuseRevokeThatKeepsTrust(root, group, live, this.state, upstreamBundle, this.now);
  }

  /**
   * `ca activate`'s refusals, against the states as they stand in this turn (a planned activation committed just
   * before is seen). Returns whether the root is still to be activated: false when it already is the active one.
   */
  checkActivation(id: string): boolean {
    const r = this.pool.get(id);
    if (r === undefined) throw notFound(`no authority with id "${id}": ca activate takes the ID of the prepared root (ca show, State prepared)`);
    if (r.record.kind !== 'root') {
      throw invalidArgument(`authority ${id} is ${r.record.kind === 'jwt' ? 'a JWT key' : `the ${r.record.datacenter} intermediate`}, not a root: ca activate takes the ID of the prepared root (ca show, State prepared)`);
    }
    const st = this.state.get(id);
    if (st === 'active') return false;
    if (st !== 'prepared') {
      const prepared = this.find('root', '', 'prepared');
      const next = prepared !== undefined ? `the prepared root is ${prepared.record.id}` : 'no root is prepared (ca rotate-root prepares one)';
      throw failedPrecondition(`root ${id} is ${st}, not prepared: only the prepared root can be activated, and ${next}`);
    }
    return true;
  }

  /** Expired authorities leave the journal, the bundle and the disk (an active one is replaced first, below). */
  dropExpired(): void {
    for (const a of this.pool.values()) {
      if (this.state.get(a.record.id) !== 'active' && a.record.notAfter <= this.now) this.removed.add(a.record.id);
    }
  }

  /**
   * Root: prepared at half-life (or on demand), active once it has been published for rootActivationDelayMs or the
   * active one can no longer cover a full intermediate. Returns the root new intermediates are signed by.
   */
  async planRoot(rotateRoot: boolean, activate?: string): Promise<LoadedAuthority> {
    const active = this.find('root', '', 'active');
    let prepared = this.find('root', '', 'prepared');
    if (rotateRoot && this.settings.upstreamCa !== undefined) {
      throw failedPrecondition('the root comes from --upstream-ca-cert/--upstream-ca-key: rotate it in the upstream PKI and restart with the new files');
    }
    if (prepared !== undefined && rootFromUpstreamCa(prepared) !== (this.settings.upstreamCa !== undefined)) {
      // Prepared before a restart switched the upstream CA on or off: it must not take over from the root the
      // configuration now asks for (an upstream CA's key copy signing on after the flags are gone, or the reverse).
      // Nothing chains to a prepared root, so it leaves the bundle at once.
      this.removed.add(prepared.record.id);
      this.droppedForSource.push(prepared);
      prepared = undefined;
    }
    const refuseDropped = (): MeshidError =>
      failedPrecondition(`root ${activate} cannot be activated: it was dropped, since it does not come from the root source (upstream CA or meshid) the server now runs with (ca show)`);
    if (activate !== undefined && prepared?.record.id !== activate) throw refuseDropped();
    if (active === undefined || active.record.notAfter <= this.now) {
      // None can sign (a taint, an empty journal, a server down past its end): its successor takes over at once.
      if (prepared) {
        if (active) this.set(active, 'old');
        this.set(prepared, 'active');
        return prepared;
      }
      let root: LoadedAuthority;
      try {
        root = await this.make.newRoot(this.now);
      } catch (err) {
        // An upstream CA that expired while the server ran: its files cannot make a root until an operator renews
        // them, but the JWT key needs no root and must not stop rotating with it (JWT-SVIDs would end within a
        // jwt_key_ttl). The expired root stays as it is: its intermediates fail each datacenter on their own.
        if (active === undefined || !isMeshidError(err) || (err.code !== 'invalid_argument' && err.code !== 'failed_precondition')) throw err;
        this.failures.push(`root: ${err.message} (the server takes renewed upstream CA files at its next start)`);
        return active;
      }
      if (active) this.set(active, 'old');
      return this.add(root, 'active');
    }
    const successor = await this.prepareRoot(active, prepared, rotateRoot);
    if (activate !== undefined && successor?.record.id !== activate) throw refuseDropped();
    if (
      successor !== undefined &&
      (successor.record.id === activate ||
        this.now >= successor.record.createdAt + this.settings.rootActivationDelayMs ||
        shouldActivateSuccessor(this.now, active.record, this.settings.intermediateTtlMs))
    ) {
      this.set(active, 'old');
      this.set(successor, 'active');
      return successor;
    }
    return active;
  }

  /** The root prepared to follow `active`: `prepared`, or one made now. */
  private async prepareRoot(active: LoadedAuthority, prepared: LoadedAuthority | undefined, rotateRoot: boolean): Promise<LoadedAuthority | undefined> {
    const upstream = this.settings.upstreamCa;
    if (upstream !== undefined && ![active, prepared].some((r) => r?.record.certDer?.equals(upstream.certDer))) {
      // The upstream files name another CA (renewed in the upstream PKI, then a restart): it takes over as a
      // rotate-root would, published first, signing intermediates after the activation delay.
      if (prepared !== undefined) this.removed.add(prepared.record.id);
      return this.add(await this.make.newRoot(this.now), 'prepared');
    }
    if (prepared === undefined && upstream === undefined && (rotateRoot || rootFromUpstreamCa(active) || shouldPrepareSuccessor(this.now, active.record))) {
      // An upstream CA still active after a restart without its flags is followed by a root of meshid's own, as a
      // rotate-root would: published now, signing after the activation delay. SPIRE without an UpstreamAuthority
      // likewise prepares a self-signed CA next.
      return this.add(await this.make.newRoot(this.now), 'prepared');
    }
    return prepared;
  }

  /** A datacenter taken out of the config: its intermediate stops signing (its agents are refused) and expires. */
  retireUnservedDatacenters(): void {
    for (const a of this.pool.values()) {
      const st = this.state.get(a.record.id);
      if (a.record.kind === 'intermediate' && (st === 'active' || st === 'prepared') && !this.settings.datacenters.includes(a.record.datacenter)) {
        this.set(a, 'old');
      }
    }
  }

  /**
   * One intermediate per datacenter, always signed by the root active when it is created. A datacenter whose new
   * intermediate cannot be made (an upstream CA near its end) must not hold back the others, the JWT key or the
   * clean-up: its failure is reported after the rest is committed (renewalFailure).
   */
  async planIntermediates(activeRoot: LoadedAuthority, switchNow = false): Promise<void> {
    for (const dc of this.settings.datacenters) {
      try {
        await this.planIntermediate(dc, activeRoot, switchNow);
      } catch (err) {
        if (!datacenterFailure(err)) throw err;
        this.failures.push(`datacenter ${dc}: ${err.message}`);
      }
    }
  }

  /** `switchNow` (ca activate): an active intermediate under another root is replaced now, not when it runs out. */
  private async planIntermediate(dc: string, activeRoot: LoadedAuthority, switchNow: boolean): Promise<void> {
    const active = this.find('intermediate', dc, 'active');
    let prepared = this.find('intermediate', dc, 'prepared');
    // A successor prepared under a root that is no longer the active one is replaced, so chains move to the new
    // root; it is dropped only once its replacement exists (below), and kept if none can be made.
    let superseded: LoadedAuthority | undefined;
    if (prepared && prepared.cert?.authorityKeyId !== activeRoot.cert?.subjectKeyId && this.state.get(activeRoot.record.id) === 'active') {
      superseded = prepared;
      prepared = undefined;
    }
    const ttl = this.settings.longestX509SvidTtlMs;
    if (switchNow && active !== undefined && active.cert?.authorityKeyId !== activeRoot.cert?.subjectKeyId && active.record.notAfter > this.now + ttl) {
      // An operator activating a root wants what is signed next to chain to it. Should the new intermediate not be
      // made, the datacenter failure is reported and the one under the previous root signs on (still published).
      const next = prepared ?? (await this.make.newIntermediate(dc, activeRoot, this.now));
      if (next === prepared) this.set(next, 'active');
      else this.add(next, 'active');
      this.set(active, 'old');
      if (superseded !== undefined) this.removed.add(superseded.record.id);
      return;
    }
    if (active === undefined || active.record.notAfter <= this.now + ttl) {
      if (prepared === undefined || prepared.record.notAfter <= this.now + ttl) {
        try {
          this.add(await this.make.newIntermediate(dc, activeRoot, this.now), 'active');
        } catch (err) {
          // No intermediate under the new root: the one prepared under the previous root (still published while
          // it chains to it) keeps the datacenter signing meanwhile.
          if (superseded === undefined || superseded.record.notAfter <= this.now + ttl) throw err;
          this.set(superseded, 'active');
          superseded = undefined;
          this.failures.push(`datacenter ${dc}: ${(err as Error).message} (its intermediate under the previous root signs meanwhile)`);
        }
      } else this.set(prepared, 'active');
      if (active) this.set(active, 'old');
    } else if (prepared === undefined && (superseded !== undefined || shouldPrepareSuccessor(this.now, active.record))) {
      this.add(await this.make.newIntermediate(dc, activeRoot, this.now), 'prepared');
    }
    if (superseded !== undefined) this.removed.add(superseded.record.id);
  }

  /** JWT signing key: the successor is published at half-life, long before it signs anything. */
  planJwtKey(): void {
    const active = this.find('jwt', '', 'active');
    const prepared = this.find('jwt', '', 'prepared');
    const ttl = this.settings.jwtSvidTtlMs;
    if (active === undefined || active.record.notAfter <= this.now + ttl) {
      if (prepared === undefined || prepared.record.notAfter <= this.now + ttl) this.add(this.make.newJwtKey(this.now), 'active');
      else this.set(prepared, 'active');
      if (active) this.set(active, 'old');
    } else if (prepared === undefined && shouldPrepareSuccessor(this.now, active.record)) {
      this.add(this.make.newJwtKey(this.now), 'prepared');
    }
  }

  /** A retired or tainted root leaves once no live intermediate chains to it. */
  dropUnusedRoots(): void {
    for (const a of this.pool.values()) {
      const st = this.state.get(a.record.id);
      if (a.record.kind !== 'root' || (st !== 'old' && st !== 'tainted') || this.removed.has(a.record.id)) continue;
      const signs = [...this.pool.values()].some(
        (i) =>
          i.record.kind === 'intermediate' && !this.removed.has(i.record.id) && i.record.notAfter > this.now && i.cert?.authorityKeyId === a.cert?.subjectKeyId,
      );
      if (!signs) this.removed.add(a.record.id);
    }
  }

  /** The plan as one journal transaction: rows added, states changed and rows removed. */
  journalChange(): Required<CaJournalChange> {
    const stagedIds = new Set(this.staged.map((a) => a.record.id));
    return {
      add: this.added().map((a) => a.record),
      setState: [...this.state]
        .filter(([id, st]) => !stagedIds.has(id) && !this.removed.has(id) && this.loaded.get(id)?.record.state !== st)
        .map(([id, st]) => ({ id, state: st })),
      remove: [...this.removed].filter((id) => !stagedIds.has(id)),
      revoked: [...this.revoked],
      revokedJwtKeys: [...this.revokedJwtKeys],
    };
  }

  /** The own bundle once the plan is committed (sequence 0: the caller numbers it). */
  ownBundle(): OwnBundleRecord {
    const live = [...this.pool.values()].filter((a) => !this.removed.has(a.record.id));
    return ownBundleRecord(this.settings.trustDomain, live, this.state, this.settings.upstreamCa?.bundleDer ?? [], this.now);
  }

  /** Every authority this plan created, in order. */
  get created(): readonly LoadedAuthority[] {
    return this.staged;
  }

  /** The authorities this plan created that enter the journal. */
  added(): LoadedAuthority[] {
    return this.staged.filter((a) => !this.removed.has(a.record.id));
  }

  /** The authorities leaving the journal: their keys go once the plan is committed. */
  removedAuthorities(): LoadedAuthority[] {
    return [...this.removed].map((id) => this.pool.get(id)!);
  }

  /** The datacenters whose intermediate could not be renewed, as the error the rotation ends with once committed. */
  renewalFailure(): MeshidError | undefined {
    if (this.failures.length === 0) return undefined;
    return failedPrecondition(`CA rotation could not renew every intermediate (everything else was committed): ${this.failures.join('; ')}`);
  }

  private find(kind: AuthorityKind, datacenter: string, st: AuthorityState): LoadedAuthority | undefined {
    return [...this.pool.values()].find(
      (a) => !this.removed.has(a.record.id) && a.record.kind === kind && a.record.datacenter === datacenter && this.state.get(a.record.id) === st,
    );
  }

  private add(a: LoadedAuthority, st: AuthorityState): LoadedAuthority {
    a.record.state = st;
    this.pool.set(a.record.id, a);
    this.state.set(a.record.id, st);
    this.staged.push(a);
    return a;
  }

  private set(a: LoadedAuthority, st: AuthorityState): void {
    this.state.set(a.record.id, st);
    // A new authority's record is the journal row itself (journalChange's add): a root prepared and activated in the
    // same rotation must be committed active, or no root is active until the next rotation.
    if (this.staged.includes(a)) a.record.state = st;
  }
}
