import { createPublicKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Clock, TimerHandle } from '../../common/clock.js';
import { failedPrecondition, unavailable } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';
import { verifyCaChain } from '../../common/x509/chain-verification.js';
import { signJwtSvid } from '../../common/jwt/jwt-svid.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { KeyStore } from './key-store.js';
import { FirstSetupMarker } from './first-setup-marker.js';
import { recoverAtStart } from './start-recovery.js';
import { checkUpstreamCa } from './upstream-ca.js';
import type { CaSettings } from './ca-settings.js';
import type { AuthorityState, CaJournalStore, CaRecord, OwnBundleRecord, RevokedJwtKeyRecord, RevokedRootRecord } from './ca-journal.js';
import { rootFromUpstreamCa, type LoadedAuthority } from './loaded-authority.js';
import { upstreamSwitchOffNotice } from './upstream-switch-off.js';
import { UncommittedKeys } from './uncommitted-keys.js';
import { AuthorityFactory, BACKDATE_MS } from './authority-factory.js';
import { planRotation, type CaAction, type RotationPlan } from './rotation-plan.js';
import { nextRotationDecisionAt, preparedRootActivatesAt } from './rotation-schedule.js';
import { anchorOutliving, sameBundleContent, trustAnchorsOf } from './own-bundle.js';
import { issuersAbove } from './issuers-above.js';
import { anchorsForRevokedRootsOnly, republishedAnchors, republishedAnchorWarning, rootChainsTo } from './revoked-roots.js';

export interface SignedX509 {
  /** Leaf first, then the issuing datacenter intermediate, then (under an upstream PKI) the CAs above it. */
  chain: Buffer[];
  notAfter: number;
  /** The intermediate that signed it; lets agents find what to re-sign when an authority is tainted. */
  authorityId: string;
}

/** A failed rotation is retried this much later, not at once: its cause (an upstream CA near its end) stays for a while. */
const ROTATION_RETRY_MS = 60_000;

/**
 * The trust domain's certificate authorities: one root, one intermediate per datacenter and the JWT signing keys,
 * each with at most one prepared successor. State lives in the datastore's CA journal and the key store; this class
 * keeps the loaded keys and signers in memory, runs the rotation decisions (rotation-plan) on the injected clock one at
 * a time, commits each and applies it to memory, and signs with the active authorities.
 */
export class CaManager {
  private authorities = new Map<string, LoadedAuthority>();
  private bundleRecord: OwnBundleRecord | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private changeListeners = new Set<(bundle: TrustBundle, bundleChanged: boolean) => void>();
  private busy: Promise<void> = Promise.resolve();
  /** Keys written by the rotation in progress that its journal commit does not name yet. */
  private readonly uncommittedKeys: UncommittedKeys;
  /** Makes the authorities a rotation plans; their keys go through uncommittedKeys: a failed commit takes them back. */
  private readonly factory: AuthorityFactory;
  private readonly firstSetup: FirstSetupMarker;
  /** Roots `ca revoke` took out of the journal, as the journal keeps them. */
  private revokedRoots: RevokedRootRecord[] = [];
  /** JWT keys `ca revoke` took out of the journal, as the journal keeps them. */
  private revokedJwtKeys: RevokedJwtKeyRecord[] = [];
  /** Revoked root ID and anchor fingerprint of each republished anchor warned of in this process: once each. */
  private readonly warnedRepublished = new Set<string>();

  private constructor(
    private readonly settings: CaSettings,
    private readonly store: CaJournalStore,
    private readonly keys: KeyStore,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.uncommittedKeys = new UncommittedKeys(keys, log);
    this.factory = new AuthorityFactory(settings, (keyId, key) => this.uncommittedKeys.write(keyId, key));
    this.firstSetup = new FirstSetupMarker(path.dirname(keys.dir));
  }

  /**
   * Loads the journal and keys, refusing to start on any inconsistency (missing key, key not matching its
   * certificate), removes key files a crash orphaned, then creates whatever authority is missing.
   */
  static async open(settings: CaSettings, store: CaJournalStore, keys: KeyStore, clock: Clock, log: Logger): Promise<CaManager> {
    const ca = new CaManager(settings, store, keys, clock, log);
    if (settings.upstreamCa !== undefined) checkUpstreamCa(settings.upstreamCa, clock.now(), settings.trustDomain);
    const firstSetup = await ca.load();
    await ca.rotate();
    // At every start, not only when the bundle changed: the anchor may have been published again by the start before.
    ca.warnOfRepublishedAnchors();
    if (settings.upstreamCa === undefined) {
      const notice = upstreamSwitchOffNotice([...ca.authorities.values()], settings, (keyId) => keys.fileOf(keyId));
      if (notice !== undefined) log.warn(notice);
    }
    // Before anything is served: a data dir with the marker never handed out a certificate its keys signed.
    if (firstSetup) ca.firstSetup.remove();
    return ca;
  }

  /** Returns whether this is a data dir's first CA setup (an empty journal), the marker of which is now on disk. */
  private async load(): Promise<boolean> {
    const recovered = await recoverAtStart(this.store, this.keys, this.firstSetup, this.settings.trustDomain, this.log, this.clock.now());
    for (const [id, loaded] of recovered.live) this.authorities.set(id, loaded);
    this.bundleRecord = recovered.bundle;
    this.revokedRoots = recovered.revokedRoots;
    this.revokedJwtKeys = recovered.revokedJwtKeys;
    return recovered.firstSetup;
  }

  /** Serializes rotations: signing never sees a half-applied change. */
  private rotate(): Promise<void> {
    const run = this.busy.then(() => this.rotateNow());
    this.busy = run.catch(() => undefined);
    return run;
  }

  /** Starts the timer that re-runs rotation decisions exactly when the next one falls due. */
  start(): void {
    this.schedule();
  }

  /**
   * For good: a rotation still running when it is called arms no timer when it ends. Resolves once that rotation has
   * ended (never rejects), so that the datastore it writes to can be closed next.
   */
  stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    return this.busy;
  }

  /** `minDelayMs`: after a failed rotation, its retry comes no sooner (a decision in the past would re-fire at once). */
  private schedule(minDelayMs = 1000): void {
    this.timer?.cancel();
    if (this.stopped) return;
    const now = this.clock.now();
    const next = nextRotationDecisionAt(this.authorities, this.settings, now);
    if (!Number.isFinite(next)) return;
    this.timer = this.clock.setTimer(() => {
      this.rotate().then(
        () => this.schedule(),
        (err: unknown) => {
          this.log.error({ err }, `CA rotation failed; retrying in ${ROTATION_RETRY_MS / 1000} s`);
          this.schedule(ROTATION_RETRY_MS);
        },
      );
    }, Math.max(minDelayMs, next - now));
  }

  private findState(kind: CaRecord['kind'], datacenter: string, state: AuthorityState): LoadedAuthority | undefined {
    for (const a of this.authorities.values()) {
      if (a.record.kind === kind && a.record.datacenter === datacenter && a.record.state === state) return a;
    }
    return undefined;
  }

  /**
   * Applies every rotation decision due at `now`, plus an optional operator action, in one journal transaction.
   * Works on a copy of the authorities' states and commits the difference, so memory only changes after the commit.
   */
  async rotateNow(action: CaAction = {}): Promise<void> {
    try {
      await this.planAndCommit(action);
    } finally {
      // A rotation that failed before its commit (a full disk) takes back the keys it wrote: no journal row will name
      // them, and the retry every minute would otherwise add more to the disk that is already full.
      this.uncommittedKeys.takeBack();
    }
  }

  private async planAndCommit(action: CaAction): Promise<void> {
    const plan = await planRotation(this.authorities, action, this.settings, this.factory, this.clock.now());
    const change = plan.journalChange();
    const bundle = plan.ownBundle();
    const previous = this.bundleRecord;
    const bundleChanged = previous === undefined || !sameBundleContent(previous, bundle);
    const unrenewed = plan.renewalFailure();
    // Without a journal change the bundle can still change: a restart with another --upstream-bundle.
    if (change.add.length === 0 && change.setState.length === 0 && change.remove.length === 0 && !bundleChanged) {
      if (unrenewed) throw unrenewed;
      return;
    }
    bundle.sequence = (previous?.sequence ?? 0) + (bundleChanged ? 1 : 0);

    await this.uncommittedKeys.commit(() => this.store.commitCaChange(change, bundleChanged ? bundle : (previous as OwnBundleRecord)));
    this.applyCommitted(plan, change.setState);
    this.revokedRoots.push(...change.revoked);
    this.revokedJwtKeys.push(...change.revokedJwtKeys);
    if (bundleChanged) this.bundleRecord = bundle;
    if (bundleChanged) this.warnOfRepublishedAnchors();
    const tb = this.bundle();
    for (const l of this.changeListeners) l(tb, bundleChanged);
    if (unrenewed) throw unrenewed;
  }

  /** A committed plan reaches memory; removed authorities' keys leave the disk. */
  private applyCommitted(plan: RotationPlan, setState: ReadonlyArray<{ id: string; state: AuthorityState }>): void {
    const removed = plan.removedAuthorities();
    for (const a of removed) this.authorities.delete(a.record.id);
    // Chains above intermediates are rebuilt from the journal, as a restart would: one cached while its root was
    // still listed must not outlive the root (a revoked root's intermediates stay listed, tainted).
    if (removed.some((a) => a.record.kind === 'root')) for (const a of this.authorities.values()) delete a.issuersAbove;
    for (const a of plan.added()) this.authorities.set(a.record.id, a);
    for (const { id, state: st } of setState) {
      const a = this.authorities.get(id);
      if (a) {
        a.record.state = st;
        a.record.updatedAt = plan.now;
      }
    }
    for (const a of plan.created) {
      this.log.info(
        { authority: a.record.id, kind: a.record.kind, datacenter: a.record.datacenter || undefined, state: a.record.state, notAfter: new Date(a.record.notAfter).toISOString() },
        `created ${a.record.kind} authority`,
      );
    }
    for (const { id, state: st } of setState) this.log.info({ authority: id, state: st }, 'authority state changed');
    // Last, and never thrown: the commit has landed, so a key the disk will not let go of (EIO, EBUSY) must not leave
    // memory half way to the journal, signing with what it retired and making a second successor at the next turn.
    // No row names the key any more, so the next start's sweep removes it.
    for (const a of removed) {
      try {
        this.keys.delete(a.record.keyId);
      } catch (err) {
        this.log.warn({ err, keyId: a.record.keyId }, 'cannot remove the key of an authority that left the CA journal; the next start removes it');
      }
    }
    for (const a of plan.droppedForSource) {
      this.log.warn(
        { authority: a.record.id },
        rootFromUpstreamCa(a)
          ? `dropped prepared root ${a.record.id}, an upstream CA: the server no longer runs with --upstream-ca-cert/--upstream-ca-key, so it will not take over`
          : `dropped prepared root ${a.record.id}, made by meshid: the server runs with --upstream-ca-cert/--upstream-ca-key, whose CA stays the root`,
      );
    }
  }

  /** Re-checks every rotation decision now, queued behind any rotation in progress (wall-clock housekeeping). */
  recheck(): Promise<void> {
    return this.serialized({});
  }

  /** `ca rotate-root`: prepares a new root now (published at once, active after rootActivationDelayMs). */
  async rotateRoot(): Promise<CaRecord> {
    return (await this.requestRootRotation()).root;
  }

  /**
   * rotateRoot, also saying whether the root returned was made by this call: a root already prepared is returned
   * instead of making another, and the operator's log must tell the two apart (a rotate-root that rotated nothing).
   */
  async requestRootRotation(): Promise<{ root: CaRecord; newlyPrepared: boolean }> {
    let before = new Set<string>();
    // Taken in turn, so a rotation queued ahead of this one (a half-life preparation) counts as already prepared.
    await this.serialized({ rotateRoot: true }, async () => void (before = new Set(this.authorities.keys())));
    const prepared = this.findState('root', '', 'prepared') ?? this.findState('root', '', 'active');
    return { root: prepared!.record, newlyPrepared: !before.has(prepared!.record.id) };
  }

  /**
   * `ca activate` (SPIRE's `localauthority x509 activate`): the prepared root takes over now, in the rotation a passed
   * activation delay would run (one journal commit), and every datacenter gets an intermediate under it at once; the
   * replaced root stays published while its intermediates live. `alreadyActive`: `id` was the active root when this
   * call's turn came (a retry, or the planned activation got there first), and nothing changed.
   */
  async activateRoot(id: string): Promise<{ root: CaRecord; alreadyActive: boolean }> {
    let alreadyActive = false;
    await this.serialized({ activateRoot: id }, async () => {
      const revoked = this.revokedRoots.find((r) => r.id === id && !this.authorities.has(id));
      if (revoked !== undefined) {
        throw failedPrecondition(`root ${id} was revoked at ${new Date(revoked.revokedAt).toISOString()} and cannot be activated: ca activate takes the ID of the prepared root (ca show, State prepared)`);
      }
      alreadyActive = this.authorities.get(id)?.record.state === 'active' && this.authorities.get(id)?.record.kind === 'root';
    });
    return { root: this.authorities.get(id)!.record, alreadyActive };
  }

  /**
   * When the prepared root `id` takes over unless `ca activate` comes first; undefined for any other authority. The
   * rotation timer fires then (rotation-schedule.ts).
   */
  rootActivatesAt(id: string): number | undefined {
    const a = this.authorities.get(id);
    if (a?.record.kind !== 'root' || a.record.state !== 'prepared') return undefined;
    return preparedRootActivatesAt(a.record, this.findState('root', '', 'active')?.record, this.settings, this.clock.now());
  }

  /**
   * `ca taint`: an authority believed compromised stops signing at once and is replaced; agents are told (through
   * taintedKeyIds) to re-sign every SVID chained to it. A tainted JWT key also leaves the bundle at once, so tokens
   * it signed stop validating; a tainted root stays in the bundle until nothing chains to it.
   */
  async taint(id: string): Promise<void> {
    await this.serialized({ taint: id });
  }

  /**
   * `ca revoke` (SPIRE's `localauthority revoke`): tainted roots and JWT keys leave the journal and the bundle now, in
   * one commit, instead of when nothing chains to them any more (up to an intermediate's lifetime). Run it once agents
   * have re-signed: an SVID still chained to a revoked root stops verifying everywhere the new bundle reaches.
   * `checkRoots`, when given, runs before a revoke that takes tainted roots, in turn with every other CA change (a
   * taint still being committed has landed by then), with the intermediates under them and their IDs; it refuses by
   * throwing. It is not asked when a root's chains would still verify against the bundle without the group (an
   * upstream CA whose PKI root stays published): the rotation refuses that revoke itself, and its reason is the one
   * to give.
   */
  async revoke(
    idOrIds: string | readonly string[],
    checkRoots?: (intermediatesUnder: ReadonlySet<string>, rootIds: readonly string[]) => Promise<void>,
  ): Promise<void> {
    const ids = typeof idOrIds === 'string' ? [idOrIds] : idOrIds;
    await this.serialized({ revoke: ids }, async () => {
      // A revoke sent again because its answer was lost (the server killed after the commit, the connection dropped)
      // would otherwise be told no such authority exists, as if the ID were mistyped.
      const revoked =
        this.revokedRoots.find((r) => ids.includes(r.id) && !this.authorities.has(r.id)) ??
        this.revokedJwtKeys.find((k) => ids.includes(k.id) && !this.authorities.has(k.id));
      if (revoked !== undefined) {
        const others = ids.filter((id) => id !== revoked.id);
        // In a group the others may still be tainted and in the bundle: "nothing is left" would make an operator stop.
        const rest = others.length === 0 ? 'nothing is left to revoke' : `nothing of it is left to revoke; revoke ${others.join(', ')} without it`;
        const root = 'subject' in revoked;
        throw failedPrecondition(
          `${root ? 'root' : 'JWT key'} ${revoked.id} was already revoked, at ${new Date(revoked.revokedAt).toISOString()}: it is in neither the CA journal nor ` +
            `the bundle, and ${rest} (ca show lists it under the revoked ${root ? 'roots' : 'JWT keys'})`,
        );
      }
      const group = ids.map((id) => this.authorities.get(id));
      // The rotation refuses such a group as a whole, and its reason is the one to give: a --force would otherwise log
      // agents cut off by a revoke that then revokes nothing.
      if (group.some((a) => a === undefined || a.record.state !== 'tainted' || a.record.kind === 'intermediate')) return;
      const roots = group.filter((a): a is LoadedAuthority => a?.record.kind === 'root');
      if (checkRoots === undefined || roots.length === 0) return;
      const staying = [...this.authorities.values()].filter((a) => !group.includes(a));
      const upstreamBundle = this.settings.upstreamCa?.bundleDer ?? [];
      if (roots.some((r) => anchorOutliving(r, staying, upstreamBundle, this.clock.now()) !== undefined)) return;
      await checkRoots(new Set(roots.flatMap((r) => [...this.intermediatesUnder(r.record.id)])), roots.map((r) => r.record.id));
    });
  }

  /**
   * Runs `fn` in the CA's own turn, with the key IDs the CA journal names: until it settles no rotation, taint or revoke
   * commits, and no CA key file is written or deleted. A backup snapshots the datastore and copies those keys in one
   * such turn, so the keys it holds are exactly those its journal names, whatever CA change an operator or the clock
   * starts meanwhile (it waits, and runs after). Signing goes on: it only reads what is in memory.
   */
  withJournalSettled<T>(fn: (keyIds: readonly string[]) => Promise<T>): Promise<T> {
    const run = this.busy.then(async () => fn((await this.store.listCaRecords()).map((r) => r.keyId)));
    this.busy = run.then(() => undefined, () => undefined);
    return run;
  }

  private serialized(action: CaAction, before?: () => Promise<void>): Promise<void> {
    const run = this.busy.then(async () => {
      await before?.();
      await this.rotateNow(action);
    });
    this.busy = run.catch(() => undefined);
    return run.finally(() => this.schedule());
  }

  /**
   * Whether chains under the root `newKeyId` verify against the trust anchors of the root `oldKeyId` (subject key IDs,
   * hex): then a peer that verified chains under the old one verifies chains under the new one with the bundle it has.
   * Two CAs an upstream PKI issued under one PKI root do. Sharing an entry of the upstream bundles recorded with them
   * is not enough: a PKI rotating its own root lists the old and the new root while they overlap, and a CA issued
   * under the new one ends at an anchor that peers holding only the old root's bundle do not have.
   */
  rootChainsVerifyUnderAnchorsOf(oldKeyId: string, newKeyId: string): boolean {
    const rootsWith = (keyId: string): LoadedAuthority[] =>
      [...this.authorities.values()].filter((a) => a.record.kind === 'root' && a.cert?.subjectKeyId === keyId);
    const anchors = rootsWith(oldKeyId).flatMap(trustAnchorsOf);
    if (anchors.length === 0) return false;
    const now = this.clock.now();
    return rootsWith(newKeyId).some((root) => {
      try {
        verifyCaChain([root.cert!.der, ...(root.record.upstreamChainDer ?? [])], anchors, now);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** Subject key IDs (hex) of tainted X.509 authorities: agents re-sign every SVID whose chain contains one. */
  taintedKeyIds(): string[] {
    return [...this.authorities.values()]
      .filter((a) => a.record.state === 'tainted' && a.cert?.subjectKeyId !== undefined)
      .map((a) => a.cert!.subjectKeyId!)
      .sort();
  }

  /** The own trust bundle as currently published. */
  bundle(): TrustBundle {
    const b = this.bundleRecord;
    if (b === undefined) throw unavailable('the CA is not initialised yet');
    return {
      trustDomain: b.trustDomain,
      x509Authorities: b.x509Authorities,
      jwtAuthorities: b.jwtAuthorities.map((k) => ({ kid: k.kid, publicKey: createPublicKey(k.publicKeyPem) })),
      sequence: b.sequence,
      refreshHintSeconds: this.settings.refreshHintSeconds,
    };
  }

  /**
   * The anchors the agent API's TLS layer accepts agent certificates under: the published X.509 authorities, less a
   * revoked root's anchor that no root of the journal chains to (revoked-roots.ts, anchorsForRevokedRootsOnly). The
   * bundle itself keeps it: the operator published it, maybe for other CAs, and the warning says how to stop that.
   */
  agentApiTrustAnchors(): Buffer[] {
    const published = this.x509Bundle().x509Authorities;
    const roots = [...this.authorities.values()];
    const left = anchorsForRevokedRootsOnly(republishedAnchors(this.revokedRoots, published), roots, this.clock.now());
    return published.filter((a) => !left.some((l) => l.equals(a)));
  }

  /** Every root `ca revoke` took out, oldest first. */
  listRevokedRoots(): readonly RevokedRootRecord[] {
    return this.revokedRoots;
  }

  /** Every JWT key `ca revoke` took out, oldest first. */
  listRevokedJwtKeys(): readonly RevokedJwtKeyRecord[] {
    return this.revokedJwtKeys;
  }

  /**
   * Logs, at error level and once per process, each published anchor that a revoked root's chains ended at: a
   * --upstream-bundle listing the PKI root again silently makes every workload trust what the revoked CA's key signs.
   */
  private warnOfRepublishedAnchors(): void {
    const published = this.bundleRecord?.x509Authorities ?? [];
    const upstreamBundle = this.settings.upstreamCa?.bundleDer ?? [];
    const now = this.clock.now();
    for (const r of republishedAnchors(this.revokedRoots, published)) {
      const key = `${r.revoked.id} ${r.anchorDer.toString('base64')}`;
      if (this.warnedRepublished.has(key)) continue;
      this.warnedRepublished.add(key);
      const anchoredRoots = [...this.authorities.values()]
        .filter((a) => a.record.kind === 'root' && rootChainsTo(a, r.anchorDer, now))
        .map((a) => a.record.id);
      const listingRoots = [...this.authorities.values()]
        .filter((a) => a.record.kind === 'root' && trustAnchorsOf(a).some((d) => d.equals(r.anchorDer)))
        .map((a) => a.record.id);
      this.log.error(
        { revokedAuthority: r.revoked.id, anchor: parseCertificate(r.anchorDer).subject },
        republishedAnchorWarning(r, upstreamBundle.some((d) => d.equals(r.anchorDer)), anchoredRoots, listingRoots),
      );
    }
  }

  /** The X.509 part of bundle(), without building the JWT keys: for checks on every agent call. */
  x509Bundle(): { x509Authorities: Buffer[]; sequence: number } {
    const b = this.bundleRecord;
    if (b === undefined) throw unavailable('the CA is not initialised yet');
    return { x509Authorities: b.x509Authorities, sequence: b.sequence };
  }

  /** Called after every committed bundle change. */
  onBundleChange(listener: (bundle: TrustBundle) => void): () => void {
    const l = (b: TrustBundle, changed: boolean): void => {
      if (changed) listener(b);
    };
    this.changeListeners.add(l);
    return () => this.changeListeners.delete(l);
  }

  /** Called after every committed journal change (rotation, taint), whether or not the bundle changed. */
  onChange(listener: () => void): () => void {
    const l = (): void => listener();
    this.changeListeners.add(l);
    return () => this.changeListeners.delete(l);
  }

  /**
   * Signs an X.509-SVID with the datacenter's active intermediate. Never truncates: a TTL the intermediate cannot
   * cover is an error (the configuration checks make this unreachable for TTLs within max_x509_svid_ttl).
   */
  signX509Svid(req: { datacenter: string; publicKey: KeyObject | Buffer; spiffeId: string; dnsNames?: string[]; ttlMs: number }): SignedX509 {
    const now = this.clock.now();
    const a = this.findState('intermediate', req.datacenter, 'active');
    if (a === undefined || a.signer === undefined || a.cert === undefined) {
      throw failedPrecondition(`no active intermediate CA for datacenter "${req.datacenter}" (configured: ${this.settings.datacenters.join(', ')})`);
    }
    const notAfter = now + req.ttlMs;
    if (now >= a.cert.notAfter) {
      // Its successor could not be made (the housekeeping logged why): "retry shortly" would send agents and the
      // operator to wait for a rotation that is not coming. Still UNAVAILABLE, so agents retry once it is fixed.
      throw unavailable(
        `the ${req.datacenter} intermediate CA expired at ${new Date(a.cert.notAfter).toISOString()} and no successor could be made: the server log says why (an expired upstream CA, say)`,
      );
    }
    if (notAfter > a.cert.notAfter) {
      throw unavailable(`the ${req.datacenter} intermediate CA cannot cover a ${formatDuration(req.ttlMs)} SVID until its successor activates; retry shortly`);
    }
    const leaf = a.signer.sign({
      publicKey: req.publicKey,
      spiffeId: req.spiffeId,
      dnsNames: req.dnsNames ?? [],
      notBefore: now - BACKDATE_MS,
      notAfter,
    });
    return { chain: [leaf, a.cert.der, ...issuersAbove(a, this.authorities)], notAfter, authorityId: a.record.id };
  }

  /**
   * The CA certificates above an X.509-SVID whose authority key ID is `authorityKeyId`: for each intermediate of the
   * journal with that subject key ID (in any state), the intermediate, then what chains carry above it. Empty when
   * the journal holds no such intermediate (it expired, or never was ours).
   */
  issuerChains(authorityKeyId: string): Buffer[][] {
    return [...this.authorities.values()]
      .filter((a) => a.record.kind === 'intermediate' && a.cert !== undefined && a.cert.subjectKeyId === authorityKeyId)
      .map((a) => [a.cert!.der, ...issuersAbove(a, this.authorities)]);
  }

  /** Signs a JWT-SVID with the active JWT key (ES256, kid always set). Times in the result are milliseconds. */
  signJwtSvid(req: { spiffeId: string; audience: string[]; ttlMs: number }): { token: string; issuedAt: number; expiresAt: number } {
    const now = this.clock.now();
    const a = this.findState('jwt', '', 'active');
    if (a === undefined) throw unavailable('no active JWT signing key');
    const iat = Math.floor(now / 1000);
    const exp = Math.floor((now + req.ttlMs) / 1000);
    if (exp * 1000 > a.record.notAfter) throw unavailable('the JWT signing key cannot cover this TTL until its successor activates; retry shortly');
    const token = signJwtSvid({ privateKey: a.key, kid: a.record.keyId, sub: req.spiffeId, aud: req.audience, iat, exp });
    return { token, issuedAt: iat * 1000, expiresAt: exp * 1000 };
  }

  /** Every authority in the journal with its state, for `ca show`. */
  listAuthorities(): CaRecord[] {
    return [...this.authorities.values()]
      .map((a) => a.record)
      // Down to the ID: a replacement made in the certificate's second (a taint) would otherwise be listed in memory's
      // order before a restart and in the datastore's after it.
      .sort(
        (a, b) =>
          a.kind.localeCompare(b.kind) || a.datacenter.localeCompare(b.datacenter) || a.notBefore - b.notBefore || a.createdAt - b.createdAt || a.id.localeCompare(b.id),
      );
  }

  /**
   * IDs of the journal's intermediates (in any state) that chain to root `rootId`: an SVID one of them signed stops
   * verifying once that root leaves the bundle. Empty for an unknown ID or one that is not a root.
   */
  intermediatesUnder(rootId: string): Set<string> {
    const root = this.authorities.get(rootId);
    const keyId = root?.record.kind === 'root' ? root.cert?.subjectKeyId : undefined;
    if (keyId === undefined) return new Set();
    return new Set(
      [...this.authorities.values()].filter((a) => a.record.kind === 'intermediate' && a.cert?.authorityKeyId === keyId).map((a) => a.record.id),
    );
  }

  fingerprintOf(id: string): string | undefined {
    const a = this.authorities.get(id);
    return a?.cert?.fingerprintSha256 ?? a?.record.keyId;
  }

  subjectOf(id: string): string | undefined {
    return this.authorities.get(id)?.cert?.subject;
  }

  /** Whether root `id` is an upstream CA's certificate rather than one meshid made (false for other kinds). */
  isUpstreamCa(id: string): boolean {
    const a = this.authorities.get(id);
    return a?.record.kind === 'root' && rootFromUpstreamCa(a);
  }

  activeIntermediate(datacenter: string): ParsedCertificate | undefined {
    return this.findState('intermediate', datacenter, 'active')?.cert;
  }

  get trustDomain(): string {
    return this.settings.trustDomain;
  }
}
