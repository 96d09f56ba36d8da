/**
 * The rotation plan on its own: real certificates and keys from the AuthorityFactory, its key writes recorded instead
 * of going to a key store, and each plan applied to the authorities the way CaManager applies a committed one (there
 * is no journal here). CaManager's own tests cover the commit, the key store and the schedule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MeshidError, failedPrecondition } from '../../../src/common/errors.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { AuthorityFactory } from '../../../src/server/ca/authority-factory.js';
import type { LoadedAuthority } from '../../../src/server/ca/loaded-authority.js';
import { planRotation, type AuthorityMaker, type CaAction, type RotationPlan, type RotationSettings } from '../../../src/server/ca/rotation-plan.js';
import type { AuthorityKind, AuthorityState, CaJournalChange } from '../../../src/server/ca/ca-journal.js';

const H = 3_600_000;
const D = 24 * H;
/** Behind real time, as the certificates are dated from it. */
const T0 = Date.now() - H;

const SETTINGS = {
  trustDomain: 'example.org',
  datacenters: ['east', 'west'],
  caKeyType: 'ec-p256' as const,
  intermediateTtlMs: 7 * D,
  rootTtlMs: 3650 * D,
  jwtKeyTtlMs: 10 * D,
  jwtSvidTtlMs: 5 * 60_000,
  longestX509SvidTtlMs: D,
  rootActivationDelayMs: D,
};

/** The authorities in memory, each plan applied as CaManager applies a committed one. */
class Authorities {
  readonly map = new Map<string, LoadedAuthority>();
  readonly keysWritten: string[] = [];
  readonly factory: AuthorityFactory;

  constructor(readonly settings: typeof SETTINGS = SETTINGS) {
    this.factory = new AuthorityFactory(settings, (keyId) => void this.keysWritten.push(keyId));
  }

  plan(now: number, action: CaAction = {}, make: AuthorityMaker = this.factory, settings: RotationSettings = this.settings): Promise<RotationPlan> {
    return planRotation(this.map, action, settings, make, now);
  }

  /** Plans and applies; returns the journal change as committed (a plan read after applying has none left). */
  async rotate(now: number, action: CaAction = {}, make: AuthorityMaker = this.factory, settings: RotationSettings = this.settings): Promise<Required<CaJournalChange>> {
    const plan = await this.plan(now, action, make, settings);
    const change = plan.journalChange();
    for (const a of plan.removedAuthorities()) this.map.delete(a.record.id);
    for (const a of plan.added()) this.map.set(a.record.id, a);
    for (const { id, state } of change.setState) this.map.get(id)!.record.state = state;
    return change;
  }

  all(kind: AuthorityKind, datacenter = '', state?: AuthorityState): LoadedAuthority[] {
    return [...this.map.values()].filter((a) => a.record.kind === kind && a.record.datacenter === datacenter && (state === undefined || a.record.state === state));
  }

  one(kind: AuthorityKind, datacenter: string, state: AuthorityState): LoadedAuthority {
    const found = this.all(kind, datacenter, state);
    assert.equal(found.length, 1, `one ${state} ${kind} ${datacenter}`);
    return found[0]!;
  }
}

/** A trust domain started at T0 whose intermediates are past half-life: each datacenter has a prepared successor. */
async function withPreparedIntermediates(settings = SETTINGS): Promise<Authorities> {
  const ca = new Authorities(settings);
  await ca.rotate(T0);
  await ca.rotate(T0 + 3.5 * D + 1);
  for (const dc of settings.datacenters) ca.one('intermediate', dc, 'prepared');
  return ca;
}

const stateChanges = (planned: RotationPlan | Required<CaJournalChange>): Map<string, AuthorityState> =>
  new Map(('journalChange' in planned ? planned.journalChange() : planned).setState.map((c) => [c.id, c.state]));
const subjectKeyId = (a: LoadedAuthority): string | undefined => a.cert?.subjectKeyId;
const issuerKeyId = (a: LoadedAuthority): string | undefined => a.cert?.authorityKeyId;

test("a taint of a root taints its active and prepared intermediates, plans a new root with new intermediates, and changes no loaded record", async () => {
  const ca = await withPreparedIntermediates();
  const root = ca.one('root', '', 'active');
  const under = ca.all('intermediate', 'east').concat(ca.all('intermediate', 'west'));
  assert.equal(under.length, 4);
  const before = [...ca.map.values()].map((a) => `${a.record.id}/${a.record.state}`);

  const plan = await ca.plan(T0 + 3.5 * D + 2, { taint: root.record.id });
  assert.deepEqual([...ca.map.values()].map((a) => `${a.record.id}/${a.record.state}`), before, 'nothing in memory moves before the commit');
  const changes = stateChanges(plan);
  assert.equal(changes.get(root.record.id), 'tainted');
  for (const i of under) assert.equal(changes.get(i.record.id), 'tainted', `${i.record.id} is tainted with its root`);
  const added = plan.journalChange().add;
  const newRoot = added.find((r) => r.kind === 'root')!;
  assert.equal(newRoot.state, 'active', 'replaced at once, with no activation delay');
  const newRootKeyId = parseCertificate(newRoot.certDer!).subjectKeyId;
  for (const dc of ['east', 'west']) {
    const fresh = added.filter((r) => r.kind === 'intermediate' && r.datacenter === dc);
    assert.deepEqual(fresh.map((r) => r.state), ['active'], `${dc}: one new active intermediate`);
    assert.equal(parseCertificate(fresh[0]!.certDer!).authorityKeyId, newRootKeyId, `${dc}: under the new root`);
  }
  assert.ok(plan.ownBundle().x509Authorities.some((d) => d.equals(root.cert!.der)), 'the tainted root stays published while its intermediates live');
});

test("a taint of a root leaves its 'old' intermediates old: they sign nothing more", async () => {
  const ca = await withPreparedIntermediates();
  await ca.rotate(T0 + 6 * D + 1); // the successors took over; the first intermediates retired
  const old = ca.one('intermediate', 'east', 'old');
  const active = ca.one('intermediate', 'east', 'active');
  assert.equal(issuerKeyId(old), issuerKeyId(active), 'both under the same root');
  const root = ca.one('root', '', 'active');

  const changes = stateChanges(await ca.plan(T0 + 6 * D + 2, { taint: root.record.id }));
  assert.equal(changes.get(active.record.id), 'tainted');
  assert.equal(changes.has(old.record.id), false, 'the retired intermediate keeps its state');
});

test('taint and revoke refusals say what is wrong and what to do instead', async () => {
  const ca = new Authorities();
  await ca.rotate(T0);
  const east = ca.one('intermediate', 'east', 'active');
  await ca.rotate(T0 + 1, { taint: east.record.id });
  const root = ca.one('root', '', 'active');
  const jwt = ca.one('jwt', '', 'active');
  const westActive = ca.one('intermediate', 'west', 'active');
  const cases: Array<{ action: CaAction; code: string; message: RegExp }> = [
    { action: { taint: 'int-nope' }, code: 'not_found', message: /^no authority with id "int-nope" \(see ca show\)$/ },
    { action: { taint: east.record.id }, code: 'failed_precondition', message: /^authority int-east-\S+ is already tainted$/ },
    { action: { revoke: ['root-nope'] }, code: 'not_found', message: /^no authority with id "root-nope" \(see ca show\)$/ },
    {
      action: { revoke: [root.record.id] },
      code: 'failed_precondition',
      message: new RegExp(`^authority ${root.record.id} is active: only a tainted authority can be revoked \\(meshid-server ca taint --id ${root.record.id} first\\)$`),
    },
    { action: { revoke: [jwt.record.id] }, code: 'failed_precondition', message: /^authority jwt-\S+ is active: only a tainted authority can be revoked/ },
    { action: { revoke: [westActive.record.id] }, code: 'failed_precondition', message: /^authority int-west-\S+ is active: only a tainted authority can be revoked/ },
    {
      action: { revoke: [east.record.id] },
      code: 'failed_precondition',
      message: /^intermediate int-east-\S+ is not in the bundle, so revoking it would change nothing: the SVIDs it signed are trusted through their root; to stop trusting them, taint and revoke that root$/,
    },
  ];
  for (const c of cases) {
    await assert.rejects(ca.plan(T0 + 2, c.action), (err: unknown) => err instanceof MeshidError && err.code === c.code && c.message.test(err.message), JSON.stringify(c.action));
  }
  assert.equal(ca.keysWritten.length, 5, 'a refused action makes no key');
});

test('a revoked root leaves the journal and the bundle at once; its tainted intermediates stay listed', async () => {
  const ca = new Authorities();
  await ca.rotate(T0);
  const root = ca.one('root', '', 'active');
  const under = [ca.one('intermediate', 'east', 'active'), ca.one('intermediate', 'west', 'active')];
  await ca.rotate(T0 + H, { taint: root.record.id });

  const plan = await ca.plan(T0 + 2 * H, { revoke: [root.record.id] });
  assert.deepEqual(plan.journalChange().remove, [root.record.id]);
  assert.deepEqual(plan.removedAuthorities().map((a) => a.record.keyId), [root.record.keyId], 'its key is deleted once committed');
  assert.ok(!plan.ownBundle().x509Authorities.some((d) => d.equals(root.cert!.der)));
  for (const i of under) assert.equal(ca.map.get(i.record.id)!.record.state, 'tainted');
  assert.equal(stateChanges(plan).size, 0, 'they stay tainted, so agents keep re-signing away from them');
});

test('without a revoke, a tainted root leaves once no live intermediate chains to it', async () => {
  const ca = new Authorities();
  await ca.rotate(T0);
  const root = ca.one('root', '', 'active');
  await ca.rotate(T0 + H, { taint: root.record.id });
  const tainted = ca.all('intermediate', 'east', 'tainted').concat(ca.all('intermediate', 'west', 'tainted'));
  const lastEnd = Math.max(...tainted.map((a) => a.record.notAfter));

  assert.equal((await ca.plan(lastEnd)).journalChange().remove.includes(root.record.id), true, 'its intermediates expired: it goes');
  assert.equal((await ca.plan(lastEnd - 1)).journalChange().remove.includes(root.record.id), false, 'kept while one still lives');
  const plan = await ca.plan(lastEnd);
  for (const i of tainted) assert.ok(plan.journalChange().remove.includes(i.record.id), 'expired intermediates leave too');
});

test("a datacenter taken out of the config: its active and prepared intermediates go 'old', none is made for it, and they leave once expired", async () => {
  const ca = await withPreparedIntermediates();
  const west = ca.all('intermediate', 'west');
  const eastOnly = { ...SETTINGS, datacenters: ['east'] };
  const change = await ca.rotate(T0 + 3.5 * D + 2, {}, ca.factory, eastOnly);
  const changes = stateChanges(change);
  for (const a of west) assert.equal(changes.get(a.record.id), 'old', `${a.record.id} retired`);
  assert.equal(change.add.some((r) => r.datacenter === 'west'), false);
  const lastEnd = Math.max(...west.map((a) => a.record.notAfter));
  const later = await ca.plan(lastEnd, {}, ca.factory, eastOnly);
  for (const a of west) assert.ok(later.journalChange().remove.includes(a.record.id));
});

test('a successor prepared under a root that is no longer active is replaced under the new one, and dropped once its replacement exists', async () => {
  const ca = await withPreparedIntermediates();
  const oldPrepared = ca.one('intermediate', 'east', 'prepared');
  await ca.rotate(T0 + 3.5 * D + 2, { rotateRoot: true });
  const newRoot = ca.one('root', '', 'prepared');

  const change = await ca.rotate(T0 + 4.5 * D + 2); // the new root activates; the active intermediates still cover a day
  assert.equal(stateChanges(change).get(newRoot.record.id), 'active');
  const replacement = ca.one('intermediate', 'east', 'prepared');
  assert.equal(issuerKeyId(replacement), subjectKeyId(newRoot));
  assert.ok(change.remove.includes(oldPrepared.record.id));
});

test('a datacenter whose new intermediate is refused (failed_precondition, stubbed maker) fails alone: the other datacenters and the JWT key still rotate', async () => {
  const ca = await withPreparedIntermediates();
  const refusingWest: AuthorityMaker = {
    newRoot: (now) => ca.factory.newRoot(now),
    newJwtKey: (now) => ca.factory.newJwtKey(now),
    newIntermediate: async (dc, root, now) => {
      if (dc === 'west') throw failedPrecondition('the upstream CA ends too soon (stub)');
      return ca.factory.newIntermediate(dc, root, now);
    },
  };
  // At the JWT key's half-life, a root taint: every intermediate needs replacing at once.
  const plan = await ca.plan(T0 + 5 * D + 1, { taint: ca.one('root', '', 'active').record.id }, refusingWest);
  const added = plan.journalChange().add.map((r) => `${r.kind}/${r.datacenter}/${r.state}`);
  assert.deepEqual(added.sort(), ['intermediate/east/active', 'jwt//prepared', 'root//active']);
  const failure = plan.renewalFailure();
  assert.ok(failure instanceof MeshidError && failure.code === 'failed_precondition');
  assert.equal(failure.message, 'CA rotation could not renew every intermediate (everything else was committed): datacenter west: the upstream CA ends too soon (stub)');
  assert.equal((await ca.plan(T0 + 5 * D + 1)).renewalFailure(), undefined);
});

test('a new intermediate that cannot be made for any other reason (stubbed maker) abandons the plan, unless one prepared under the previous root can stand in', async () => {
  const diskFull = new Error('ENOSPC: no space left on device (stub)');
  const ca = await withPreparedIntermediates();
  const noIntermediates: AuthorityMaker = {
    newRoot: (now) => ca.factory.newRoot(now),
    newJwtKey: (now) => ca.factory.newJwtKey(now),
    newIntermediate: async () => {
      throw diskFull;
    },
  };
  // A taint of the active east intermediate needs a new one at once; the prepared one is under the active root and
  // simply takes over, so the refusal shows with a root taint, whose intermediates all go.
  await assert.rejects(ca.plan(T0 + 3.5 * D + 2, { taint: ca.one('root', '', 'active').record.id }, noIntermediates), (err: unknown) => err === diskFull);

  // The root switch of CaManager's "keeps signing with the one prepared under the old root": the new root activates
  // the instant the active intermediates need replacing, and none can be made under it.
  const preparedUnderOld = new Map(['east', 'west'].map((dc) => [dc, ca.one('intermediate', dc, 'prepared')]));
  await ca.rotate(T0 + 5 * D, { rotateRoot: true });
  const plan = await ca.plan(T0 + 6 * D, {}, noIntermediates);
  const changes = stateChanges(plan);
  for (const [dc, p] of preparedUnderOld) {
    assert.equal(changes.get(p.record.id), 'active', `${dc}: the intermediate prepared under the previous root stands in`);
    assert.equal(plan.journalChange().remove.includes(p.record.id), false);
  }
  assert.equal(changes.get(ca.one('root', '', 'prepared').record.id), 'active', 'the root switch is committed all the same');
  assert.match(plan.renewalFailure()!.message, /datacenter east: ENOSPC.*\(its intermediate under the previous root signs meanwhile\); datacenter west: ENOSPC/);
});

test('a root prepared when the active one can no longer cover a full intermediate enters the journal active', async () => {
  const ca = new Authorities({ ...SETTINGS, rootTtlMs: 15 * D });
  await ca.rotate(T0);
  const plan = await ca.plan(T0 + 8.5 * D); // past the root's half-life (7.5 d) and its last full intermediate (8 d)
  const roots = plan.journalChange().add.filter((r) => r.kind === 'root');
  assert.deepEqual(roots.map((r) => r.state), ['active']);
});
