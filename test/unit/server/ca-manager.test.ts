import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { generateKeyPair, exportPkcs8Pem } from '../../../src/common/x509/keys.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { verifyChain } from '../../../src/common/x509/chain-verification.js';
import { MeshidError } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';
import type { CaRecord } from '../../../src/server/ca/ca-journal.js';
import { opensslVerify } from '../../support/openssl.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import { fillDisk } from '../../support/tmpfs.js';

const H = 3_600_000;
const D = 24 * H;

test('an empty data dir gets a root, one intermediate per datacenter and a JWT key, all active', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const all = t.ca.listAuthorities();
    assert.deepEqual(all.map((a) => `${a.kind}/${a.datacenter}/${a.state}`).sort(), [
      'intermediate/east/active', 'intermediate/west/active', 'jwt//active', 'root//active',
    ]);
    const bundle = t.ca.bundle();
    assert.equal(bundle.x509Authorities.length, 1);
    assert.equal(bundle.jwtAuthorities.length, 1);
    for (const dc of ['east', 'west']) {
      const inter = t.ca.activeIntermediate(dc)!;
      const r = opensslVerify({ roots: bundle.x509Authorities, leaf: inter.der, atTime: t.clock.now() });
      assert.ok(r.ok, r.output);
      assert.ok(inter.subject.includes(dc), `intermediate subject names the datacenter: ${inter.subject}`);
    }
    for (const file of fs.readdirSync(t.keys.dir)) {
      assert.equal(fs.statSync(path.join(t.keys.dir, file)).mode & 0o777, 0o600, `${file} is 0600`);
    }
    assert.equal(fs.statSync(t.keys.dir).mode & 0o777, 0o700);
  } finally {
    await t.close();
    cleanup();
  }
});

test('a restart reuses the same root and intermediates (same fingerprints)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = await openTestCa(dir);
    const before = a.ca.listAuthorities().map((r) => a.ca.fingerprintOf(r.id));
    await a.close();
    const b = await openTestCa(dir, {}, a.clock);
    assert.deepEqual(b.ca.listAuthorities().map((r) => b.ca.fingerprintOf(r.id)), before);
    await b.close();
  } finally {
    cleanup();
  }
});

/** A CA set up in `dir` and closed again, with its first intermediate's key file and that file's content. */
async function closedCaWithIntermediateKey(dir: string): Promise<{ a: Awaited<ReturnType<typeof openTestCa>>; file: string; original: Buffer }> {
  const a = await openTestCa(dir);
  const inter = a.ca.listAuthorities().find((r) => r.kind === 'intermediate')!;
  await a.close();
  const file = a.keys.fileOf(inter.keyId);
  return { a, file, original: fs.readFileSync(file) };
}

test('a missing or mismatched CA key stops startup with a clear error; an orphaned key is removed', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { a, file, original } = await closedCaWithIntermediateKey(dir);
    fs.writeFileSync(file, exportPkcs8Pem(generateKeyPair('ec-p256').privateKey));
    await assert.rejects(openTestCa(dir, {}, a.clock), (e: unknown) => e instanceof MeshidError && /does not match the intermediate certificate/.test(e.message));
    fs.rmSync(file);
    await assert.rejects(openTestCa(dir, {}, a.clock), /CA key file .* is missing/);
    fs.writeFileSync(file, original, { mode: 0o600 });
    const orphan = a.keys.fileOf('orphan-0000');
    fs.writeFileSync(orphan, exportPkcs8Pem(generateKeyPair('ec-p256').privateKey), { mode: 0o600 });
    const b = await openTestCa(dir, {}, a.clock);
    assert.equal(fs.existsSync(orphan), false, 'the orphaned key file is removed');
    await b.close();
  } finally {
    cleanup();
  }
});

test('a start refused for a missing CA key deletes no key file the journal does not name (newer keys beside an older datastore)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { a, file, original } = await closedCaWithIntermediateKey(dir);
    fs.rmSync(file);
    const newer = a.keys.fileOf('int-east-0000000000000000');
    fs.writeFileSync(newer, exportPkcs8Pem(generateKeyPair('ec-p256').privateKey), { mode: 0o600 });
    await assert.rejects(openTestCa(dir, {}, a.clock), /CA key file .* is missing/);
    assert.equal(fs.existsSync(newer), true, 'a refused start removes nothing');
    fs.writeFileSync(file, original, { mode: 0o600 });
    const b = await openTestCa(dir, {}, a.clock);
    assert.equal(fs.existsSync(newer), false, 'a start that succeeds sweeps the orphan');
    await b.close();
  } finally {
    cleanup();
  }
});

test('an X.509-SVID starts 10 s before it is signed, so a peer whose clock is a few seconds behind accepts it; its lifetime runs from the signing', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    t.clock.advance(H);
    const signedAt = t.clock.now();
    const { publicKey } = generateKeyPair('ec-p256');
    const s = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H });
    const leaf = parseCertificate(s.chain[0]!);
    assert.equal(leaf.notBefore, signedAt - 10_000, 'back-dated by the 10 s the agent assumes (server-clock.ts SERVER_BACKDATE_MS)');
    assert.equal(leaf.notAfter, signedAt + H, 'the back-dating does not shorten the TTL asked for');
    const behind = opensslVerify({ roots: t.ca.bundle().x509Authorities, intermediates: [s.chain[1]!], leaf: s.chain[0]!, atTime: signedAt - 5_000 });
    assert.ok(behind.ok, behind.output);
  } finally {
    await t.close();
    cleanup();
  }
});

test('intermediates are prepared at half-life and activated when they can no longer cover a full SVID; chains switch only then', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const first = t.ca.activeIntermediate('east')!;
    t.clock.advance(3.5 * D + 1);
    await t.ca.rotateNow();
    const prepared = t.ca.listAuthorities().filter((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'prepared');
    assert.equal(prepared.length, 1, 'a successor is prepared at half-life');
    const { publicKey } = generateKeyPair('ec-p256');
    const before = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D });
    assert.ok(before.chain[1]!.equals(first.der), 'still signed by the active intermediate');
    t.clock.advance(2.5 * D);
    await t.ca.rotateNow();
    const second = t.ca.activeIntermediate('east')!;
    assert.notEqual(second.fingerprintSha256, first.fingerprintSha256);
    const after = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D });
    assert.ok(after.chain[1]!.equals(second.der));
    assert.ok(parseCertificate(after.chain[0]!).notAfter <= second.notAfter);
    assert.equal(t.ca.bundle().x509Authorities.length, 1, 'the bundle holds roots only and did not change');
    const r = opensslVerify({ roots: t.ca.bundle().x509Authorities, intermediates: [after.chain[1]!], leaf: after.chain[0]!, atTime: t.clock.now() });
    assert.ok(r.ok, r.output);
  } finally {
    await t.close();
    cleanup();
  }
});

test('30 simulated days: every instant has an active intermediate that covers a full 24h SVID', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    t.ca.start();
    const { publicKey } = generateKeyPair('ec-p256');
    for (let h = 0; h < 30 * 24; h += 6) {
      t.clock.advance(6 * H);
      await new Promise((r) => setImmediate(r));
      await t.ca.rotateNow();
      const s = t.ca.signX509Svid({ datacenter: 'west', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D });
      assert.equal(s.notAfter, t.clock.now() + D, 'never truncated');
    }
    const olds = t.ca.listAuthorities().filter((a) => a.state === 'old' && a.notAfter <= t.clock.now());
    assert.equal(olds.length, 0, 'expired authorities leave the journal');
  } finally {
    await t.close();
    cleanup();
  }
});

test('JWT keys: the successor is published in the bundle before it signs, the old one stays until its tokens expire', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir, { jwt_key_ttl: '1h', default_jwt_svid_ttl: '5m' });
  try {
    const kidOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
    const k1 = kidOf(t.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 5 * 60e3 }).token);
    t.clock.advance(31 * 60e3);
    await t.ca.rotateNow();
    const kids = t.ca.bundle().jwtAuthorities.map((k) => k.kid);
    assert.equal(kids.length, 2, 'successor published at half-life');
    assert.equal(kidOf(t.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 5 * 60e3 }).token), k1, 'old key still signs');
    t.clock.advance(25 * 60e3);
    await t.ca.rotateNow();
    const k2 = kidOf(t.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 5 * 60e3 }).token);
    assert.notEqual(k2, k1);
    assert.ok(t.ca.bundle().jwtAuthorities.some((k) => k.kid === k1), 'retired key kept while its tokens live');
    t.clock.advance(10 * 60e3);
    await t.ca.rotateNow();
    assert.ok(!t.ca.bundle().jwtAuthorities.some((k) => k.kid === k1), 'retired key leaves after expiry');
  } finally {
    await t.close();
    cleanup();
  }
});

test('an SVID TTL the intermediate cannot cover is refused, never truncated', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const { publicKey } = generateKeyPair('ec-p256');
    assert.throws(() => t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: 30 * D }), /cannot cover/);
    assert.throws(() => t.ca.signX509Svid({ datacenter: 'north', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D }), /no active intermediate CA for datacenter "north"/);
    // The JWT signing key likewise: a token must not outlive the key validators find it by.
    assert.throws(() => t.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 3650 * D }), (err: unknown) => err instanceof MeshidError && err.code === 'unavailable' && /JWT signing key cannot cover/.test(err.message));
  } finally {
    await t.close();
    cleanup();
  }
});

test('rotate-root publishes the new root at once, activates it after the delay, and drops the old one once nothing chains to it', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const { publicKey } = generateKeyPair('ec-p256');
    const oldRoot = t.ca.bundle().x509Authorities[0]!;
    const fresh = await t.ca.rotateRoot();
    assert.equal(fresh.state, 'prepared');
    assert.equal(t.ca.bundle().x509Authorities.length, 2, 'the new root is in the bundle before anything chains to it');
    let sawNewRootChain = false;
    let oldRootLeft = false;
    for (let day = 0; day < 20; day++) {
      const s = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D });
      // Every chain served verifies against the bundle published at that moment.
      verifyChain(s.chain, t.ca.bundle().x509Authorities, t.clock.now());
      const issuerRoot = t.ca.bundle().x509Authorities.find((r) => parseCertificate(r).subjectKeyId === parseCertificate(s.chain[1]!).authorityKeyId)!;
      if (!issuerRoot.equals(oldRoot)) sawNewRootChain = true;
      else assert.equal(sawNewRootChain, false, 'chains never go back to the old root');
      if (!t.ca.bundle().x509Authorities.some((r) => r.equals(oldRoot))) oldRootLeft = true;
      t.clock.advance(D);
      await t.ca.rotateNow();
    }
    assert.ok(sawNewRootChain, 'chains moved to the new root');
    assert.ok(oldRootLeft, 'the old root left the bundle once no intermediate chained to it');
    assert.equal(t.ca.bundle().x509Authorities.length, 1);
  } finally {
    await t.close();
    cleanup();
  }
});

test('a root prepared when the active one can no longer cover a full intermediate is active at once, in memory and in the journal', async () => {
  const { dir, cleanup } = tempDir();
  // root_ttl 15d, intermediate_ttl 7d: the root's successor is due at day 7.5 and must take over by day 8.
  const t = await openTestCa(dir, { root_ttl: '15d' }, new FakeClock(Date.now() - H));
  try {
    const first = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    t.clock.advance(8.5 * D); // no rotation ran in between: the server was down across both decisions
    await t.ca.rotateNow();
    const rootStates = (records: CaRecord[]): string[] => records.filter((a) => a.kind === 'root').map((a) => `${a.id === first.id ? 'first' : 'new'}/${a.state}`).sort();
    // The first root's intermediates expired on day 7, so nothing chains to it any more and it leaves at once.
    assert.deepEqual(rootStates(t.ca.listAuthorities()), ['new/active']);
    assert.deepEqual(rootStates(await t.ds.listCaRecords()), ['new/active'], 'the journal agrees');
    const newRoot = t.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
    assert.equal(t.ca.activeIntermediate('east')!.authorityKeyId, parseCertificate(newRoot.certDer!).subjectKeyId, 'intermediates are made under it');
  } finally {
    await t.close();
    cleanup();
  }
});

test('taint: a tainted intermediate is replaced at once and reported for re-signing', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const before = t.ca.activeIntermediate('east')!;
    const id = t.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!.id;
    await t.ca.taint(id);
    const after = t.ca.activeIntermediate('east')!;
    assert.notEqual(after.fingerprintSha256, before.fingerprintSha256);
    assert.deepEqual(t.ca.taintedKeyIds(), [before.subjectKeyId]);
    const { publicKey } = generateKeyPair('ec-p256');
    assert.ok(t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D }).chain[1]!.equals(after.der));
    await assert.rejects(t.ca.taint(id), /already tainted/);
    await assert.rejects(t.ca.taint('int-nope'), /no authority with id "int-nope"/);
  } finally {
    await t.close();
    cleanup();
  }
});

test('taint: a tainted root is replaced with its intermediates at once; a tainted JWT key leaves the bundle at once', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const root = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    const oldInts = ['east', 'west'].map((dc) => t.ca.activeIntermediate(dc)!);
    await t.ca.taint(root.id);
    const newRoot = t.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
    assert.notEqual(newRoot.id, root.id);
    for (const [i, dc] of ['east', 'west'].entries()) {
      const now = t.ca.activeIntermediate(dc)!;
      assert.notEqual(now.fingerprintSha256, oldInts[i]!.fingerprintSha256, `${dc} intermediate re-issued`);
      assert.equal(now.authorityKeyId, parseCertificate(newRoot.certDer!).subjectKeyId);
    }
    assert.equal(t.ca.taintedKeyIds().length, 3, 'the root and both intermediates it signed are tainted');
    const jwt = t.ca.listAuthorities().find((a) => a.kind === 'jwt' && a.state === 'active')!;
    await t.ca.taint(jwt.id);
    assert.ok(!t.ca.bundle().jwtAuthorities.some((k) => k.kid === jwt.keyId), 'a tainted JWT key is out of the bundle at once');
    assert.equal(t.ca.bundle().jwtAuthorities.length, 1);
  } finally {
    await t.close();
    cleanup();
  }
});

test("taint of a root: its active and prepared intermediates are tainted with it, its 'old' ones stay old", async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir, {}, new FakeClock(Date.now() - H));
  try {
    const byState = (dc: string): Map<string, string> =>
      new Map(t.ca.listAuthorities().filter((a) => a.kind === 'intermediate' && a.datacenter === dc).map((a) => [a.id, a.state]));
    t.clock.advance(3.5 * D + 1);
    await t.ca.rotateNow(); // east: active + prepared
    const prepared = byState('east');
    t.clock.advance(2.5 * D);
    await t.ca.rotateNow(); // east: the first retired ('old'), its successor active
    const retired = [...byState('east')].filter(([, st]) => st === 'old').map(([id]) => id);
    assert.equal(retired.length, 1);
    const root = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    await t.ca.taint(root.id);
    const after = byState('east');
    assert.equal(after.get(retired[0]!), 'old', 'the retired intermediate signs nothing any more and keeps its state');
    for (const id of prepared.keys()) if (id !== retired[0]) assert.equal(after.get(id), 'tainted');

    const { dir: dir2, cleanup: cleanup2 } = tempDir();
    const u = await openTestCa(dir2, {}, new FakeClock(Date.now() - H));
    try {
      u.clock.advance(3.5 * D + 1);
      await u.ca.rotateNow();
      const under = u.ca.listAuthorities().filter((a) => a.kind === 'intermediate').map((a) => `${a.datacenter}/${a.state}`).sort();
      assert.deepEqual(under, ['east/active', 'east/prepared', 'west/active', 'west/prepared']);
      await u.ca.taint(u.ca.listAuthorities().find((a) => a.kind === 'root')!.id);
      const states = u.ca.listAuthorities().filter((a) => a.kind === 'intermediate').map((a) => a.state).sort();
      assert.deepEqual(states, ['active', 'active', 'tainted', 'tainted', 'tainted', 'tainted'], 'prepared ones too; one new per datacenter');
    } finally {
      await u.close();
      cleanup2();
    }
  } finally {
    await t.close();
    cleanup();
  }
});

test('revoke of an intermediate or JWT key that is not tainted is refused, naming its state and the taint to run first', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir, {}, new FakeClock(Date.now() - H));
  try {
    for (const kind of ['intermediate', 'jwt'] as const) {
      const a = t.ca.listAuthorities().find((r) => r.kind === kind && r.state === 'active')!;
      await assert.rejects(
        t.ca.revoke(a.id),
        (e: unknown) =>
          e instanceof MeshidError &&
          e.code === 'failed_precondition' &&
          e.message === `authority ${a.id} is active: only a tainted authority can be revoked (meshid-server ca taint --id ${a.id} first)`,
      );
    }
  } finally {
    await t.close();
    cleanup();
  }
});

test('revoke: a tainted root leaves the bundle now, not an intermediate lifetime later; only tainted roots and JWT keys can be revoked', async () => {
  const { dir, cleanup } = tempDir();
  let t = await openTestCa(dir);
  try {
    const root = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    const east = t.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
    await assert.rejects(t.ca.revoke(root.id), (e: unknown) => e instanceof MeshidError && e.code === 'failed_precondition' && /root-\S+ is active: only a tainted authority can be revoked \(meshid-server ca taint --id/.test(e.message));
    await t.ca.taint(root.id);
    const sequence = t.ca.bundle().sequence;
    t.clock.advance(6 * D);
    await t.ca.recheck();
    assert.ok(t.ca.bundle().x509Authorities.some((d) => d.equals(root.certDer!)), 'without revoke, a tainted root stays while its intermediates live');
    await assert.rejects(t.ca.revoke(east.id), /is not in the bundle, so revoking it would change nothing/);
    await assert.rejects(t.ca.revoke('root-nope'), /no authority with id "root-nope"/);

    await t.ca.revoke(root.id);
    const bundle = t.ca.bundle();
    assert.equal(bundle.x509Authorities.length, 1);
    assert.ok(!bundle.x509Authorities.some((d) => d.equals(root.certDer!)), 'the revoked root is out of the bundle');
    assert.ok(bundle.sequence > sequence, 'under a new sequence, so agents and federated peers hear of it');
    assert.ok(!t.ca.listAuthorities().some((a) => a.id === root.id));
    assert.ok(!fs.readdirSync(t.keys.dir).includes(`${root.keyId}.pem`), 'its key left the disk');
    assert.equal(t.ca.taintedKeyIds().length, 2, 'the intermediates it signed are still reported for re-signing');
    const { publicKey } = generateKeyPair('ec-p256');
    const svid = t.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H });
    verifyChain(svid.chain, bundle.x509Authorities, t.clock.now());

    const jwt = t.ca.listAuthorities().find((a) => a.kind === 'jwt' && a.state === 'active')!;
    await t.ca.taint(jwt.id);
    // A group naming the revoked root beside a live tainted key: the refusal says what is still to do, not that nothing is.
    await assert.rejects(
      t.ca.revoke([root.id, jwt.id]),
      (e: unknown) =>
        e instanceof MeshidError && e.code === 'failed_precondition' &&
        e.message.includes(`root ${root.id} was already revoked`) && e.message.includes(`revoke ${jwt.id} without it`) &&
        !e.message.includes('nothing is left to revoke'),
    );
    assert.ok(t.ca.listAuthorities().some((a) => a.id === jwt.id), 'the refused group revoked nothing');
    await t.ca.revoke(jwt.id);
    assert.ok(!t.ca.listAuthorities().some((a) => a.id === jwt.id));

    // A restart keeps it so.
    const clock = t.clock;
    await t.close();
    t = await openTestCa(dir, {}, clock);
    assert.ok(!t.ca.bundle().x509Authorities.some((d) => d.equals(root.certDer!)));
    assert.equal(t.ca.taintedKeyIds().length, 2);
  } finally {
    await t.close();
    cleanup();
  }
});

test('revoke of a JWT key sent again (its answer lost) says it was already revoked, and when, also after a restart; not that no such authority exists', async () => {
  const { dir, cleanup } = tempDir();
  let t = await openTestCa(dir);
  try {
    const jwt = t.ca.listAuthorities().find((a) => a.kind === 'jwt' && a.state === 'active')!;
    await t.ca.taint(jwt.id);
    const revokedAt = new Date(t.clock.now()).toISOString();
    await t.ca.revoke(jwt.id);
    const already = (e: unknown) =>
      e instanceof MeshidError && e.code === 'failed_precondition' &&
      e.message === `JWT key ${jwt.id} was already revoked, at ${revokedAt}: it is in neither the CA journal nor the bundle, and nothing is left to revoke (ca show lists it under the revoked JWT keys)`;
    await assert.rejects(t.ca.revoke(jwt.id), already);
    await assert.rejects(t.ca.revoke('jwt-nope'), /no authority with id "jwt-nope"/, 'an ID never seen is still not found');

    const clock = t.clock;
    await t.close();
    t = await openTestCa(dir, {}, clock);
    await assert.rejects(t.ca.revoke(jwt.id), already, 'the journal kept it');
  } finally {
    await t.close();
    cleanup();
  }
});

test("revoke's root check runs in turn after a taint still being committed, with the intermediates under the root, and its refusal revokes nothing", async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const root = t.ca.listAuthorities().find((a) => a.kind === 'root')!;
    const under = t.ca.listAuthorities().filter((a) => a.kind === 'intermediate').map((a) => a.id).sort();
    // Not awaited: a revoke sent while the taint is still being committed (two operators, or a script in parallel).
    const tainting = t.ca.taint(root.id);
    let seen: string[] | undefined;
    const refusal = new MeshidError('failed_precondition', 'agents still on it');
    await assert.rejects(
      t.ca.revoke(root.id, async (intermediates) => {
        seen = [...intermediates].sort();
        throw refusal;
      }),
      (e: unknown) => e === refusal,
    );
    await tainting;
    assert.deepEqual(seen, under, 'checked once the taint had landed, with the intermediates the root signed');
    assert.equal(t.ca.listAuthorities().find((a) => a.id === root.id)?.state, 'tainted', 'the refused revoke left the root');
    assert.ok(t.ca.bundle().x509Authorities.some((d) => d.equals(root.certDer!)));
    // Not asked about what is not a root.
    const jwt = t.ca.listAuthorities().find((a) => a.kind === 'jwt' && a.state === 'active')!;
    await t.ca.taint(jwt.id);
    await t.ca.revoke(jwt.id, async () => assert.fail('a JWT key is not checked'));
    assert.ok(!t.ca.listAuthorities().some((a) => a.id === jwt.id));
    // A group the rotation refuses as a whole (an ID mistyped, an authority not tainted) gets that reason, not the
    // agents check's: with --force, the check would log agents cut off by a revoke that then revokes nothing.
    const active = t.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
    for (const [other, reason] of [['root-nope', /no authority with id "root-nope"/], [active.id, /is active: only a tainted authority can be revoked/]] as const) {
      await assert.rejects(t.ca.revoke([root.id, other], async () => assert.fail('the agents check is not asked')), reason);
    }
    assert.equal(t.ca.listAuthorities().find((a) => a.id === root.id)?.state, 'tainted');
  } finally {
    await t.close();
    cleanup();
  }
});

test('stop() is for good and waits: a rotation still running when it is called ends first, and arms no timer', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    t.ca.start();
    assert.ok(t.clock.pendingTimers() > 0, 'a running CA has its next rotation armed');
    const rotating = t.ca.rotateRoot();
    await t.ca.stop();
    assert.ok(
      t.ca.listAuthorities().some((a) => a.kind === 'root' && a.state === 'prepared'),
      'stop() resolved only once the rotation in progress had committed: the datastore can be closed next',
    );
    await rotating;
    assert.equal(t.clock.pendingTimers(), 0);
  } finally {
    await t.close();
    cleanup();
  }
});

test('a datacenter taken out of the config stops signing at once and its intermediate expires away', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = await openTestCa(dir);
    await a.close();
    const b = await openTestCa(dir, { datacenters: ['east'] }, a.clock);
    try {
      const west = b.ca.listAuthorities().filter((r) => r.kind === 'intermediate' && r.datacenter === 'west');
      assert.deepEqual(west.map((r) => r.state), ['old']);
      const { publicKey } = generateKeyPair('ec-p256');
      assert.throws(
        () => b.ca.signX509Svid({ datacenter: 'west', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H }),
        (err: unknown) => err instanceof MeshidError && err.code === 'failed_precondition' && /no active intermediate CA for datacenter "west" \(configured: east\)/.test(err.message),
      );
      b.clock.advance(8 * D);
      await b.ca.recheck();
      assert.deepEqual(b.ca.listAuthorities().filter((r) => r.datacenter === 'west'), []);
      assert.ok(!fs.readdirSync(b.keys.dir).includes(`${west[0]!.keyId}.pem`), 'its key left the disk');
    } finally {
      await b.close();
    }
  } finally {
    cleanup();
  }
});

test("a datacenter taken out of the config has its prepared intermediate retired too, and gets no new one", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = await openTestCa(dir, {}, new FakeClock(Date.now() - H));
    a.clock.advance(3.5 * D + 1);
    await a.ca.rotateNow();
    await a.close();
    const b = await openTestCa(dir, { datacenters: ['east'] }, a.clock);
    try {
      const west = b.ca.listAuthorities().filter((r) => r.kind === 'intermediate' && r.datacenter === 'west');
      assert.deepEqual(west.map((r) => r.state), ['old', 'old']);
      b.clock.advance(4 * D);
      // The first has expired and left; the once-prepared one is past its half-life, where a served datacenter would
      // have a successor prepared: it stays retired, alone.
      await b.ca.recheck();
      assert.deepEqual(b.ca.listAuthorities().filter((r) => r.datacenter === 'west').map((r) => r.state), ['old']);
    } finally {
      await b.close();
    }
  } finally {
    cleanup();
  }
});

test('retired authorities that expire while the server is down are removed at the next start, keys included', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = await openTestCa(dir);
    for (let i = 0; i < 13; i++) {
      a.clock.advance(D / 2);
      await a.ca.recheck();
    }
    const retired = a.ca.listAuthorities().filter((r) => r.state === 'old' && r.kind === 'intermediate');
    assert.ok(retired.length > 0, 'intermediates were retired by day 6.5');
    await a.close();
    a.clock.advance(2 * D); // down while they expire
    const b = await openTestCa(dir, {}, a.clock);
    try {
      const ids = new Set(b.ca.listAuthorities().map((r) => r.id));
      for (const r of retired) assert.ok(!ids.has(r.id), `${r.id} left the journal`);
      const keys = fs.readdirSync(b.keys.dir);
      for (const r of retired) assert.ok(!keys.some((k) => k.startsWith(r.keyId)), `${r.keyId} left the disk`);
    } finally {
      await b.close();
    }
  } finally {
    cleanup();
  }
});

/** Lets a rotation the fake clock started run to its end (it awaits the datastore). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('a failed rotation is retried after 60 s, not every second (key writes fail: stubbed key store)', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    let writes = 0;
    t.keys.write = () => {
      writes++;
      throw new Error('ENOSPC: no space left on device (stubbed)');
    };
    t.ca.start();
    t.clock.advance(3.5 * D + 1); // past the first decision (a successor to prepare)
    await settle();
    const failed = writes;
    assert.ok(failed >= 1, 'the rotation ran and failed');
    t.clock.advance(59_000);
    await settle();
    assert.equal(writes, failed, 'no retry within 60 s');
    t.clock.advance(1_000);
    await settle();
    assert.ok(writes > failed, 'retried 60 s after the failure');
  } finally {
    await t.close();
    cleanup();
  }
});

test('a root switch whose new intermediate cannot be made keeps signing with the one prepared under the old root (stubbed key store)', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const oldRoot = t.ca.bundle().x509Authorities[0]!;
    t.clock.advance(3.5 * D + 1);
    await t.ca.rotateNow(); // successors prepared under the old root
    const preparedUnderOld = t.ca.listAuthorities().filter((a) => a.kind === 'intermediate' && a.state === 'prepared');
    assert.equal(preparedUnderOld.length, 2);
    t.clock.advance(1.5 * D - 1);
    await t.ca.rotateRoot(); // activates after the 24h delay: the instant the active intermediates need replacing
    t.clock.advance(D);
    const realWrite = t.keys.write.bind(t.keys);
    t.keys.write = (id, key) => {
      if (id.startsWith('int-')) throw new Error('ENOSPC: no space left on device (stubbed)');
      realWrite(id, key);
    };
    await assert.rejects(t.ca.rotateNow(), (err: unknown) => err instanceof MeshidError && /could not renew every intermediate \(everything else was committed\).*signs meanwhile/.test(err.message));
    const bundle = t.ca.bundle().x509Authorities;
    assert.equal(bundle.length, 2, 'both roots are published');
    const { publicKey } = generateKeyPair('ec-p256');
    for (const dc of ['east', 'west']) {
      const active = t.ca.activeIntermediate(dc)!;
      assert.ok(preparedUnderOld.some((p) => t.ca.fingerprintOf(p.id) === active.fingerprintSha256), `${dc}: the intermediate prepared under the old root took over`);
      const s = t.ca.signX509Svid({ datacenter: dc, publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: D });
      const r = opensslVerify({ roots: bundle, intermediates: [s.chain[1]!], leaf: s.chain[0]!, atTime: t.clock.now() });
      assert.ok(r.ok, r.output);
    }
    assert.ok(bundle.some((r) => r.equals(oldRoot)), 'the old root stays published while an active intermediate chains to it');
    // Once keys can be written again, the next successors (at the stand-in's half-life, as in any root rotation,
    // where active intermediates keep the old root until their own turn) come under the new root.
    t.keys.write = realWrite;
    t.clock.advance(D + 1);
    await t.ca.rotateNow();
    const newRoot = parseCertificate(bundle.find((r) => !r.equals(oldRoot))!);
    for (const dc of ['east', 'west']) {
      const prepared = t.ca.listAuthorities().filter((a) => a.kind === 'intermediate' && a.datacenter === dc && a.state === 'prepared');
      assert.equal(prepared.length, 1, `${dc}: a successor is prepared`);
      assert.equal(parseCertificate(prepared[0]!.certDer!).authorityKeyId, newRoot.subjectKeyId, `${dc}: under the new root`);
    }
  } finally {
    await t.close();
    cleanup();
  }
});

test('a taint whose replacement key the disk cannot take changes nothing: the datacenter keeps signing', async (t) => {
  if (process.geteuid?.() !== 0) return t.skip('needs root, to mount a small tmpfs');
  const { dir, cleanup } = tempDir();
  const ca = await openTestCa(dir);
  // Only the key directory is full (its own small file system): the journal commit would go through.
  const keysDir = ca.keys.dir;
  const saved = new Map(fs.readdirSync(keysDir).map((name) => [name, fs.readFileSync(path.join(keysDir, name))]));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', keysDir]).status === 0;
  t.after(async () => {
    if (mounted) spawnSync('umount', ['-l', keysDir]);
    await ca.close();
    cleanup();
  });
  if (!mounted) return t.skip('cannot mount tmpfs here');
  for (const [name, bytes] of saved) fs.writeFileSync(path.join(keysDir, name), bytes, { mode: 0o600 });
  fillDisk(keysDir);

  const east = ca.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
  assert.equal(ca.ca.listAuthorities().some((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'prepared'), false);
  await assert.rejects(ca.ca.taint(east.id), (err: unknown) => err instanceof MeshidError && err.code === 'resource_exhausted' && /cannot write a CA key/.test(err.message));
  assert.equal(ca.ca.listAuthorities().find((a) => a.id === east.id)?.state, 'active', 'not tainted without a replacement');
  const { publicKey } = generateKeyPair('ec-p256');
  assert.ok(ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H }).chain.length > 0);
});

test('a key file the disk will not delete after a commit leaves memory as the journal says: one active key each, and it signs (stubbed key store)', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  let closed = false;
  try {
    t.clock.advance(3.5 * D + 1);
    await t.ca.rotateNow(); // successors prepared; the first JWT key, expired, is retired and leaves at the next turn
    const realDelete = t.keys.delete.bind(t.keys);
    const undeletable: string[] = [];
    t.keys.delete = (keyId) => {
      undeletable.push(keyId);
      throw new Error(`EIO: i/o error, unlink '${keyId}.pem' (stubbed)`);
    };
    // One turn that removes (the retired JWT key), adds (a new JWT key) and changes states (intermediates take over).
    t.clock.advance(3.5 * D);
    await t.ca.rotateNow();
    assert.ok(undeletable.length > 0, 'the turn removed an authority');
    const journal = new Map((await t.ds.listCaRecords()).map((r) => [r.id, r.state]));
    assert.deepEqual(new Map(t.ca.listAuthorities().map((r) => [r.id, r.state])), journal, 'memory is what the journal committed');
    const jwt = t.ca.signJwtSvid({ spiffeId: 'spiffe://example.org/w', audience: ['a'], ttlMs: 5 * 60_000 });
    const kid = JSON.parse(Buffer.from(jwt.token.split('.')[0]!, 'base64url').toString()).kid as string;
    assert.ok(t.ca.bundle().jwtAuthorities.some((k) => k.kid === kid), 'signed with a key of the published bundle');
    // The next turn makes no second successor beside the one committed.
    t.keys.delete = realDelete;
    await t.ca.rotateNow();
    const active = (await t.ds.listCaRecords()).filter((r) => r.state === 'active').map((r) => `${r.kind}/${r.datacenter}`).sort();
    assert.deepEqual(active, ['intermediate/east', 'intermediate/west', 'jwt/', 'root/']);
    await t.close();
    closed = true;
    // No row names the key any more: the next start sweeps it.
    const again = await openTestCa(dir, {}, t.clock);
    for (const keyId of undeletable) assert.equal(fs.existsSync(again.keys.fileOf(keyId)), false, `${keyId} swept`);
    await again.close();
  } finally {
    if (!closed) await t.close();
    cleanup();
  }
});
