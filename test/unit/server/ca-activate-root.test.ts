/**
 * `ca activate` (CaManager.activateRoot, SPIRE's `localauthority x509 activate`): the prepared root takes over now,
 * in the rotation its activation delay's end would run, with a new intermediate under it for every datacenter; what
 * is not the prepared root is refused, saying what to do. Real CA on a temp data dir and SQLite journal, FakeClock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { MeshidError } from '../../../src/common/errors.js';
import type { CaRecord } from '../../../src/server/ca/ca-journal.js';
import { opensslVerify } from '../../support/openssl.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

const H = 3_600_000;

const states = (records: CaRecord[], names: Map<string, string>): string[] =>
  records.filter((a) => a.kind !== 'jwt').map((a) => `${a.kind}/${a.datacenter}/${names.get(a.id) ?? 'new'}/${a.state}`).sort();

test('ca activate: the prepared root signs a new intermediate for every datacenter at once, in one commit a restart keeps; the replaced root stays published', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const first = t.ca.listAuthorities().filter((a) => a.kind !== 'jwt');
    const names = new Map(first.map((a) => [a.id, 'first']));
    const prepared = await t.ca.rotateRoot();
    names.set(prepared.id, 'prepared');
    assert.equal(t.ca.rootActivatesAt(prepared.id), prepared.createdAt + 24 * H, 'root_activation_delay (24h) after it was made');
    t.clock.advance(H);

    const { root, alreadyActive } = await t.ca.activateRoot(prepared.id);
    assert.equal(root.id, prepared.id);
    assert.equal(alreadyActive, false);
    assert.equal(t.ca.rootActivatesAt(prepared.id), undefined, 'an active root has no activation time');
    const expected = [
      'intermediate/east/first/old', 'intermediate/east/new/active', 'intermediate/west/first/old', 'intermediate/west/new/active',
      'root//first/old', 'root//prepared/active',
    ];
    assert.deepEqual(states(t.ca.listAuthorities(), names), expected);
    assert.deepEqual(states(await t.ds.listCaRecords(), names), expected, 'the journal agrees');
    const bundle = t.ca.bundle().x509Authorities;
    assert.equal(bundle.length, 2, 'the replaced root stays in the bundle while its intermediates live');

    // What is signed next chains to the activated root, for a strict verifier holding only that root.
    const { publicKey } = generateKeyPair('ec-p256');
    for (const dc of ['east', 'west']) {
      const s = t.ca.signX509Svid({ datacenter: dc, publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H });
      const r = opensslVerify({ roots: [root.certDer!], intermediates: s.chain.slice(1), leaf: s.chain[0]!, atTime: t.clock.now() });
      assert.ok(r.ok, `${dc}: ${r.output}`);
    }

    await t.close();
    const again = await openTestCa(dir, {}, t.clock);
    try {
      assert.deepEqual(states(again.ca.listAuthorities(), names), expected, 'a restart finds the activation committed whole');
    } finally {
      await again.close();
    }
  } finally {
    await t.close().catch(() => undefined);
    cleanup();
  }
});

test('ca activate refuses what is not the prepared root: an unknown ID, an intermediate, the old root, a tainted root, a revoked root', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const refused = async (id: string, code: string, message: RegExp): Promise<void> =>
      assert.rejects(t.ca.activateRoot(id), (e: unknown) => e instanceof MeshidError && e.code === code && message.test(e.message));
    const firstRoot = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    const east = t.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east')!;
    const jwt = t.ca.listAuthorities().find((a) => a.kind === 'jwt')!;
    await refused('root-nope', 'not_found', /^no authority with id "root-nope": ca activate takes the ID of the prepared root \(ca show, State prepared\)$/);
    await refused(east.id, 'invalid_argument', new RegExp(`^authority ${east.id} is the east intermediate, not a root: ca activate takes the ID of the prepared root`));
    await refused(jwt.id, 'invalid_argument', new RegExp(`^authority ${jwt.id} is a JWT key, not a root`));

    const second = await t.ca.rotateRoot();
    await t.ca.activateRoot(second.id);
    await refused(firstRoot.id, 'failed_precondition', new RegExp(`^root ${firstRoot.id} is old, not prepared: only the prepared root can be activated, and no root is prepared \\(ca rotate-root prepares one\\)$`));
    const third = await t.ca.rotateRoot();
    await refused(firstRoot.id, 'failed_precondition', new RegExp(`and the prepared root is ${third.id}$`));

    await t.ca.taint(firstRoot.id);
    await refused(firstRoot.id, 'failed_precondition', new RegExp(`^root ${firstRoot.id} is tainted, not prepared`));
    await t.ca.revoke(firstRoot.id);
    await refused(firstRoot.id, 'failed_precondition', new RegExp(`^root ${firstRoot.id} was revoked at \\S+ and cannot be activated`));
    assert.equal(t.ca.listAuthorities().find((a) => a.id === third.id)?.state, 'prepared', 'no refusal activated anything');
  } finally {
    await t.close();
    cleanup();
  }
});

test('ca activate racing the planned activation: whichever comes second answers as done, and one root is active', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const prepared = await t.ca.rotateRoot();
    t.clock.advance(24 * H);
    // The timer's rotation (here recheck) is queued first and activates it by its delay; the activate comes second.
    const [, answer] = await Promise.all([t.ca.recheck(), t.ca.activateRoot(prepared.id)]);
    assert.equal(answer.alreadyActive, true);
    assert.equal(answer.root.id, prepared.id);
    // A retry once its answer was lost: done, nothing changes.
    const before = t.ca.listAuthorities().map((a) => `${a.id}/${a.state}`);
    assert.equal((await t.ca.activateRoot(prepared.id)).alreadyActive, true);
    assert.deepEqual(t.ca.listAuthorities().map((a) => `${a.id}/${a.state}`), before);
    assert.deepEqual(t.ca.listAuthorities().filter((a) => a.kind === 'root' && a.state === 'active').map((a) => a.id), [prepared.id]);
  } finally {
    await t.close();
    cleanup();
  }
});

test("a prepared root's activation time is the earlier of root_activation_delay after it was made and the instant the active root can no longer cover an intermediate", async () => {
  const { dir, cleanup } = tempDir();
  // root_ttl 15d, intermediate_ttl 7d: the first root can cover a whole intermediate until 8 days after it was made.
  const t = await openTestCa(dir, { root_ttl: '15d' });
  try {
    const active = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    t.clock.advance(7.6 * 24 * H);
    await t.ca.rotateNow();
    const prepared = t.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'prepared')!;
    const at = t.ca.rootActivatesAt(prepared.id)!;
    assert.equal(at, active.notAfter - 7 * 24 * H + 1);
    assert.ok(at < prepared.createdAt + 24 * H);
    t.clock.set(at - 1);
    await t.ca.rotateNow();
    assert.equal(t.ca.listAuthorities().find((a) => a.id === prepared.id)?.state, 'prepared', 'not a millisecond before');
    t.clock.set(at);
    await t.ca.rotateNow();
    assert.equal(t.ca.listAuthorities().find((a) => a.id === prepared.id)?.state, 'active', 'at the time shown');
  } finally {
    await t.close();
    cleanup();
  }
});

test('a root prepared and activated under a datacenter whose prepared intermediate chains to the old root: that one is dropped, the new one signs', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const oldRoot = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    // Past an intermediate's half-life (7d): each datacenter has a successor prepared under the first root.
    t.clock.advance(3.6 * 24 * H);
    await t.ca.rotateNow();
    const preparedUnderOld = t.ca.listAuthorities().filter((a) => a.kind === 'intermediate' && a.state === 'prepared').map((a) => a.id);
    assert.equal(preparedUnderOld.length, 2);
    const root = await t.ca.rotateRoot();
    await t.ca.activateRoot(root.id);
    const ids = new Set(t.ca.listAuthorities().map((a) => a.id));
    for (const id of preparedUnderOld) assert.equal(ids.has(id), false, `${id} left`);
    const rootKey = parseCertificate(root.certDer!).subjectKeyId;
    for (const dc of ['east', 'west']) assert.equal(t.ca.activeIntermediate(dc)!.authorityKeyId, rootKey, `${dc} signs under the activated root`);
    assert.equal(t.ca.listAuthorities().find((a) => a.id === oldRoot.id)?.state, 'old');
  } finally {
    await t.close();
    cleanup();
  }
});
