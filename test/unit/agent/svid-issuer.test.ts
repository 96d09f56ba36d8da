import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { entryFromMessage, entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { SvidIssuer, type SignedItem } from '../../../src/agent/cache/svid-issuer.js';
import type { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import { BUDGET_REFUSALS_WAITED_FOR_MS } from '../../../src/agent/client/budget-refusal.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { DEFAULT_PENDING_TIMEOUT_MS } from '../../../src/agent/workload/workload-context.js';
import { MeshidError, resourceExhausted, unavailable } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { importPrivateKey, keyMatchesCertificate } from '../../../src/common/x509/keys.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { heldLifetime, renewalTime } from '../../../src/common/rotation.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { opensslVerify } from '../../support/openssl.js';
import { tempDir } from '../../support/server-kit.js';
import { DAY, entry, HOUR, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const sel12 = [{ type: 'unix', value: 'uid:12' }];

/** Lets queued microtasks and the signing promises run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function issuerWith(sign: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>, extra: Partial<ConstructorParameters<typeof SvidIssuer>[0]> = {}) {
  const cache = fx.cache();
  const issuer = new SvidIssuer({ cache, sign, clock: fx.clock, log: silentLogger(), random: () => 0.5, ...extra });
  return { cache, issuer };
}

type Sign = (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>;

/**
 * An issuer whose signing calls go to `front`, which answers them itself (fails, refuses, holds) or passes them on to
 * `real`: the fixture's signer for the issuer's own cache.
 */
function issuerFronting(front: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>, real: Sign) => Promise<SignedItem[]>, extra: Partial<ConstructorParameters<typeof SvidIssuer>[0]> = {}) {
  let real: Sign | undefined;
  const made = issuerWith((items) => front(items, real!), extra);
  real = fx.signer(made.cache).sign;
  return made;
}

/** An issuer signing straight with the fixture's signer for its own cache; `signer.calls` lists its calls. */
function issuerSigning(extra: Partial<ConstructorParameters<typeof SvidIssuer>[0]> = {}) {
  const cache = fx.cache();
  const signer = fx.signer(cache);
  const issuer = new SvidIssuer({ cache, sign: signer.sign, clock: fx.clock, log: silentLogger(), random: () => 0.5, ...extra });
  return { cache, signer, issuer };
}

test('new entries get an SVID for a fresh P-256 key, signed in one batch, that openssl verifies against the bundle', async () => {
  const { cache, signer, issuer } = issuerSigning();
  const entries = [entry('i1', ['unix:uid:1']), entry('i2', ['unix:uid:1']), entry('i3', ['unix:uid:2'])];
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  assert.equal(signer.calls.length, 1, 'one SignX509Svids call for the burst');
  assert.equal(signer.calls[0]!.length, 3);
  const keys = new Set<string>();
  for (const e of entries) {
    const svid = cache.svid(e.id)!;
    const leaf = parseCertificate(svid.chain[0]!);
    assert.deepEqual(leaf.uriSans, [e.spiffeId]);
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(keyMatchesCertificate(importPrivateKey(svid.privateKey), leaf.der));
    keys.add(svid.privateKey.toString('hex'));
    const r = opensslVerify({ roots: fx.bundle().x509Authorities, intermediates: svid.chain.slice(1), leaf: svid.chain[0]!, atTime: fx.clock.now() });
    assert.ok(r.ok, r.output);
  }
  assert.equal(keys.size, 3, 'one key per SVID');
  issuer.stop();
});

test('each SVID is renewed with a new key at its renewal time on the injected clock, not before', async () => {
  const { cache, issuer } = issuerSigning();
  const e = entry('rot', ['unix:uid:3']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const first = cache.svid(e.id)!;
  // random 0.5 → jitter 0 → half the life it is held for, from the request (sent at the clock's time: it stood still)
  const due = renewalTime(heldLifetime(first, fx.clock.now()), 0);
  let notified = 0;
  cache.subscribe([{ type: 'unix', value: 'uid:3' }], () => notified++);
  fx.clock.advance(due - fx.clock.now() - 1);
  await settle();
  assert.equal(cache.svid(e.id)!.version, first.version, 'not renewed before its time');
  fx.clock.advance(1);
  await settle();
  const second = cache.svid(e.id)!;
  assert.notEqual(second.version, first.version);
  assert.notDeepEqual(second.privateKey, first.privateKey, 'a new key');
  assert.ok(second.notAfter > first.notAfter);
  assert.equal(notified, 1, 'streams hear about the rotation once');
  issuer.stop();
});

test('an SVID of a TTL shorter than the server\'s 10 s backdating is renewed at half the life it is held for, not again the moment it arrives', async () => {
  const { cache, signer, issuer } = issuerSigning();
  const e = entry('short-ttl', ['unix:uid:5'], { x509_svid_ttl: 5 });
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const first = cache.svid(e.id)!;
  assert.equal(first.notAfter - first.notBefore, 15_000, 'the server backdated the 5 s SVID by 10 s');
  // Past the half of notBefore..notAfter already: renewing by that, every SVID would be renewed again on arrival.
  fx.clock.advance(0);
  await settle();
  fx.clock.advance(2_499);
  await settle();
  assert.equal(signer.calls.length, 1, 'not renewed before half of the 5 s it is held for');
  assert.equal(cache.svid(e.id)!.version, first.version);
  fx.clock.advance(1);
  await settle();
  assert.equal(signer.calls.length, 2, 'renewed 2.5 s after it was asked for');
  assert.notEqual(cache.svid(e.id)!.version, first.version);
  issuer.stop();
});

test('restored SVIDs are scheduled for renewal, entries without one are signed at once (reconcile)', async () => {
  const cache = fx.cache();
  const signer = fx.signer(cache);
  const held = entry('held', ['unix:uid:4']);
  const missing = entry('missing', ['unix:uid:4']);
  cache.apply({ upserts: [held, missing] });
  const restored = fx.issue(held, DAY);
  cache.putSvids([restored]);
  const issuer = new SvidIssuer({ cache, sign: signer.sign, clock: fx.clock, log: silentLogger(), random: () => 0.5 });
  issuer.reconcile();
  await settle();
  assert.deepEqual(signer.calls, [[missing.id]]);
  assert.equal(cache.svid(held.id)!.version, restored.version);
  fx.clock.advance(DAY / 2 - 60_000);
  await settle();
  assert.equal(signer.calls.length, 1, 'the restored SVID is not renewed before its half-life');
  fx.clock.advance(60_000);
  await settle();
  assert.ok(signer.calls[1]?.includes(held.id), 'renewed at its half-life');
  assert.notEqual(cache.svid(held.id)!.version, restored.version);
  issuer.stop();
});

test('a failed call is retried after a backoff, and at once when kicked after a reconnect', async () => {
  let down = true;
  const attempts: number[] = [];
  const { cache, issuer } = issuerFronting(async (items, real) => {
    attempts.push(fx.clock.now());
    if (down) throw unavailable('connection refused');
    return real(items);
  });
  const e = entry('retry', ['unix:uid:5']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  assert.equal(attempts.length, 1);
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 1 });
  fx.clock.advance(499);
  await settle();
  assert.equal(attempts.length, 1, 'no retry before half the first backoff (1 s with equal jitter)');
  fx.clock.advance(1000);
  await settle();
  assert.equal(attempts.length, 2);
  down = false;
  issuer.kick();
  await settle();
  assert.equal(attempts.length, 3);
  assert.ok(cache.svid(e.id));
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 });
  issuer.stop();
});

test('the items of one answer that the server refuses one by one come back together: one call a round, not one each', async () => {
  let refuse = false;
  let random = (): number => 0.5;
  const calls: number[] = [];
  const { cache, issuer } = issuerFronting(
    async (items, real) => {
      calls.push(items.length);
      if (refuse) return items.map((i) => ({ entryId: i.entryId, code: 14, message: 'stubbed: the CA refuses every item', chain: [] }));
      return real(items);
    },
    { random: () => random() },
  );
  // Ten 1 h SVIDs signed in one call: their renewals fall due at one instant, and go in one call.
  const entries = Array.from({ length: 10 }, (_, i) => entry(`item-${i}`, ['unix:uid:6'], { x509_svid_ttl: 3600 }));
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  assert.equal(cache.svidCount, 10);
  assert.deepEqual(calls, [10]);
  // From now on every item is refused on its own, and each draw of the jitter differs.
  refuse = true;
  let draw = 0;
  random = () => (draw++ % 10) / 10;
  calls.length = 0;
  const start = fx.clock.now();
  while (fx.clock.now() < start + 45 * 60_000) {
    fx.clock.advance(1000);
    await settle();
  }
  assert.ok(calls.length > 1, 'retried meanwhile');
  assert.deepEqual(calls, calls.map(() => 10), 'every retry carries all ten items the one answer refused');
  issuer.stop();
});

test('renewals falling due one by one while the server is down are retried together: one call a round for them all, not one each', async () => {
  let down = false;
  const calls: Array<{ at: number; size: number }> = [];
  const { cache, issuer } = issuerFronting(async (items, real) => {
    calls.push({ at: fx.clock.now(), size: items.length });
    if (down) throw unavailable('connection refused');
    return real(items);
  });
  // Five SVIDs of 10 min signed a minute apart: their renewals fall due a minute apart, each at its own instant.
  const entries = [1, 2, 3, 4, 5].map((i) => entry(`round-${i}`, ['unix:uid:6'], { x509_svid_ttl: 600 }));
  const start = fx.clock.now();
  for (const e of entries) {
    issuer.request(cache.apply({ upserts: [e] }).needSvid);
    await settle();
    fx.clock.advance(60_000);
  }
  assert.equal(cache.svidCount, 5);
  down = true;
  calls.length = 0;
  // A second at a time, as a real clock fires each renewal alone, up to 30 min after the first was signed.
  while (fx.clock.now() < start + 30 * 60_000) {
    fx.clock.advance(1000);
    await settle();
  }
  const afterAllFailed = calls.filter((c) => c.at >= start + 10 * 60_000);
  assert.ok(afterAllFailed.length > 0, 'retried meanwhile');
  assert.deepEqual(
    afterAllFailed.map((c) => c.size),
    afterAllFailed.map(() => 5),
    'once every renewal has failed, each retry carries all five: one round, not five entries on five backoffs',
  );
  // Near each SVID's expiry the round comes within a quarter of the time it has left (the soonest-expiring of the five
  // bounds it); once all five have expired there is nothing left to protect, and the round keeps the plain backoff.
  const afterAllExpired = calls.filter((c) => c.at >= start + 15 * 60_000);
  assert.ok(afterAllExpired.length < 8, `${afterAllExpired.length} calls in the 15 min after every SVID expired`);
  // One round at a time, however near an expiry: never closer than the bound's 5 s floor, jittered (2.5 s).
  for (let i = 1; i < afterAllFailed.length; i++) {
    assert.ok(afterAllFailed[i]!.at - afterAllFailed[i - 1]!.at >= 2500, `a round ${afterAllFailed[i]!.at - afterAllFailed[i - 1]!.at} ms after the one before`);
  }
  down = false;
  issuer.kick();
  await settle();
  assert.equal(calls.at(-1)!.size, 5, 'kicked after the reconnect, all five go at once');
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 });
  issuer.stop();
});

test('an item the server refuses is not published and is retried later; the others of the batch are', async () => {
  const bad = entry('refused', ['unix:uid:6']);
  const good = entry('fine', ['unix:uid:6']);
  const { cache, issuer } = issuerFronting(async (items, real) =>
    (await real(items)).map((r) => (r.entryId === bad.id ? { entryId: r.entryId, code: 7, message: 'not authorized', chain: [] } : r)),
  );
  issuer.request(cache.apply({ upserts: [bad, good] }).needSvid);
  await settle();
  assert.ok(cache.svid(good.id));
  assert.equal(cache.svid(bad.id), undefined);
  assert.equal(issuer.pending().failing, 1);
  issuer.stop();
});

test('a chain that does not name the entry or does not certify the key is refused', async () => {
  const e = entry('checked', ['unix:uid:7']);
  const impostor = entry('someone-else', ['unix:uid:7']);
  let mode: 'wrong-id' | 'wrong-key' = 'wrong-id';
  const { cache, issuer } = issuerWith(async (items) =>
    items.map((i) => ({ entryId: i.entryId, code: 0, message: '', chain: mode === 'wrong-id' ? fx.issue(impostor).chain : fx.issue(e).chain })),
  );
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  assert.equal(cache.svid(e.id), undefined, 'another identity is not accepted');
  mode = 'wrong-key';
  issuer.kick();
  await settle();
  assert.equal(cache.svid(e.id), undefined, 'a certificate for another key is not accepted');
  issuer.stop();
});

test('an entry that changed while its CSR was in flight is signed again for its new state', async () => {
  const cache = fx.cache();
  const real = fx.signer(cache);
  let gate: () => void = () => undefined;
  let held = true;
  const issuer = new SvidIssuer({
    cache,
    clock: fx.clock,
    log: silentLogger(),
    random: () => 0.5,
    sign: async (items) => {
      if (held) await new Promise<void>((r) => (gate = r));
      return real.sign(items);
    },
  });
  const e = entry('moving', ['unix:uid:8']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const renamed = entryFromMessage({ ...entryToMessage(e), spiffe_id: 'spiffe://example.org/moved', revision: e.revision + 1 });
  issuer.request(cache.apply({ upserts: [renamed] }).needSvid);
  held = false;
  gate();
  await settle();
  assert.equal(cache.svid(e.id)?.spiffeId, 'spiffe://example.org/moved');
  assert.equal(real.calls.length, 2);
  issuer.stop();
});

test('an entry changed in who gets it (selectors) while its first SVID is being signed is not signed twice', async () => {
  let gate: () => void = () => undefined;
  let sent = 0;
  const { cache, issuer } = issuerFronting(async (items, real) => {
    sent++;
    if (sent === 1) await new Promise<void>((r) => (gate = r));
    return real(items);
  });
  const e = entry('reselected', ['unix:uid:14']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const moved = entryFromMessage({ ...entryToMessage(e), selectors: [{ type: 'unix', value: 'uid:15' }], revision: e.revision + 1 });
  issuer.request(cache.apply({ upserts: [moved] }).needSvid);
  gate();
  await settle();
  assert.equal(cache.svid(e.id)?.spiffeId, e.spiffeId);
  assert.deepEqual(cache.snapshot([{ type: 'unix', value: 'uid:15' }]).svids.map((s) => s.entryId), [e.id], 'served under the new selectors');
  assert.equal(sent, 1, 'one signing: the answer was for the SVID the entry still needs');
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 });
  issuer.stop();
});

test('tainted authorities: every SVID chaining through one (intermediate or root) is re-signed at once', async () => {
  const { cache, signer, issuer } = issuerSigning();
  const e = entry('taint', ['unix:uid:9']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const before = cache.svid(e.id)!;
  const intermediateSki = parseCertificate(before.chain[1]!).subjectKeyId!;
  issuer.setTainted(['ffff']);
  await settle();
  assert.equal(signer.calls.length, 1, 'an unrelated key id changes nothing');
  issuer.setTainted(['ffff', intermediateSki.toUpperCase()]);
  await settle();
  assert.equal(signer.calls.length, 2);
  const second = cache.svid(e.id)!;
  assert.notEqual(second.version, before.version);
  // The root, named by the intermediate's authority key ID: what chains to it through the intermediate goes too.
  issuer.setTainted(['ffff', intermediateSki, parseCertificate(second.chain[1]!).authorityKeyId!]);
  await settle();
  assert.equal(signer.calls.length, 3);
  assert.notEqual(cache.svid(e.id)!.version, second.version);
  issuer.stop();
});

test('a taint reaching the agent while an SVID\'s renewal is out is not signed twice: the answer is checked for the taint when it comes', async () => {
  const cache = fx.cache();
  const calls: string[] = [];
  let datacenter = 'east';
  let gate: (() => void) | undefined;
  const issuer = new SvidIssuer({
    cache,
    clock: fx.clock,
    log: silentLogger(),
    random: () => 0.5,
    sign: async (items) => {
      const dc = datacenter;
      calls.push(dc);
      if (dc === 'west') await new Promise<void>((r) => (gate = r));
      return items.map((i) => {
        const signed = fx.ca.signX509Svid({ datacenter: dc, publicKey: parseCsr(i.csr).publicKey, spiffeId: cache.entry(i.entryId)!.spiffeId, ttlMs: DAY });
        return { entryId: i.entryId, code: 0, message: '', chain: signed.chain };
      });
    },
  });
  const e = entry('taint-in-flight', ['unix:uid:10']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const eastSvid = cache.svid(e.id)!;
  // Its renewal goes out (the server now answering from another intermediate) and is held there.
  datacenter = 'west';
  fx.clock.advance(renewalTime(heldLifetime(eastSvid, fx.clock.now()), 0) - fx.clock.now());
  await settle();
  assert.deepEqual(calls, ['east', 'west']);
  issuer.setTainted([parseCertificate(eastSvid.chain[1]!).subjectKeyId!]);
  await settle();
  gate!();
  await settle();
  const renewed = cache.svid(e.id)!;
  assert.notEqual(renewed.version, eastSvid.version);
  assert.notDeepEqual(renewed.chain[1], eastSvid.chain[1], 'issued by the other intermediate');
  assert.deepEqual(calls, ['east', 'west'], 'the renewal out when the taint came brought an untainted SVID: no second signing');
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 });
  issuer.stop();
});

test('once the issuer stops for good (the agent must re-attest), an SVID that expires is no longer waited for: a first message goes with the rest', async () => {
  const { cache, signer, issuer } = issuerSigning();
  const long = entry('stopped-long', ['unix:uid:12']);
  const short = entry('stopped-short', ['unix:uid:12']);
  cache.apply({ upserts: [long, short] });
  cache.putSvids([fx.issue(long, DAY), fx.issue(short, HOUR)]);
  issuer.reconcile();
  await settle();
  assert.equal(signer.calls.length, 0, 'both SVIDs are fresh');
  let notified = 0;
  cache.subscribe(sel12, () => notified++);
  // The server no longer accepts the agent and no join token is left: ServerConnection.giveUp stops the issuer.
  issuer.stop();
  fx.clock.advance(HOUR + 1);
  await settle();
  assert.equal(signer.calls.length, 0);
  const snap = cache.snapshot(sel12);
  assert.deepEqual(snap.svids.map((s) => s.spiffeId), [long.spiffeId], 'the expired SVID is not served');
  assert.equal(snap.complete, true, 'nothing is being signed: the first message does not wait for the expired one');
  assert.deepEqual([...snap.signing], []);
  assert.ok(notified > 0, 'its streams were told');
});

test('a signing call that fails after the issuer stopped (the agent shutting down) is not logged as one to retry', async () => {
  const cache = fx.cache();
  let fail!: (err: Error) => void;
  const captured = capturingLogger('svid-issuer');
  const issuer = new SvidIssuer({ cache, clock: fx.clock, log: captured.log, random: () => 0.5, sign: () => new Promise((_, reject) => (fail = reject)) });
  issuer.request(cache.apply({ upserts: [entry('stopped-mid-call', ['unix:uid:13'])] }).needSvid);
  await settle();
  issuer.stop();
  // The agent closes its channel to the server: the call out fails.
  fail(unavailable('the channel to meshid-server was closed'));
  await settle();
  assert.deepEqual(captured.records().filter((r) => r.level >= LEVEL.warn).map((r) => r.msg), []);
});

test('when more than a batch waits, the SVIDs open streams are watching are signed first', async () => {
  const { cache, signer, issuer } = issuerSigning({ batchSize: 2, maxInflight: 1 });
  const entries = [1, 2, 3, 4, 5].map((i) => entry(`queue-${i}`, [`unix:uid:${300 + i}`]));
  const unsubscribe = cache.subscribe([{ type: 'unix', value: 'uid:305' }, { type: 'unix', value: 'gid:0' }], () => undefined);
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  assert.deepEqual(signer.calls, [
    [entries[4]!.id, entries[0]!.id],
    [entries[1]!.id, entries[2]!.id],
    [entries[3]!.id],
  ]);
  unsubscribe();
  issuer.stop();
});

test('a refusal of the agent itself is reported, and the entries wait instead of hammering the server', async () => {
  const reported: string[] = [];
  let calls = 0;
  const { cache, issuer } = issuerWith(
    async () => {
      calls++;
      throw new MeshidError('permission_denied', 'banned: agent x is banned');
    },
    { onRejected: (kind) => reported.push(kind) },
  );
  issuer.request(cache.apply({ upserts: [entry('banned', ['unix:uid:10'])] }).needSvid);
  await settle();
  assert.deepEqual(reported, ['banned']);
  assert.equal(calls, 1);
  await settle();
  assert.equal(calls, 1);
  issuer.stop();
  fx.clock.advance(HOUR);
  await settle();
  assert.equal(calls, 1, 'a stopped issuer signs nothing');
});

test('an entry removed while its failing call was out is not retried or counted as failing', async () => {
  let reject!: (e: Error) => void;
  const { cache, issuer } = issuerWith(() => new Promise<SignedItem[]>((_resolve, r) => (reject = r)));
  const e = entry('gone-while-out', ['unix:uid:78']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  assert.equal(issuer.pending().inflight, 1);
  issuer.forget(cache.apply({ removed: [e.id] }).removed.map((r) => r.id));
  reject(unavailable('server down'));
  await settle();
  issuer.kick();
  fx.clock.advance(10 * 60_000);
  await settle();
  const pending = issuer.pending();
  issuer.stop();
  assert.deepEqual(pending, { queued: 0, inflight: 0, failing: 0 });
});

/** An issuer signing with the fixture's CA whose first call's answer is held until `answer()`; `calls` lists each call's entry IDs. */
function issuerHoldingFirstAnswer(cache: ReturnType<typeof fx.cache>): { issuer: SvidIssuer; calls: string[][]; answer: () => void } {
  const real = fx.signer(cache);
  const calls: string[][] = [];
  let release: (() => void) | undefined;
  const issuer = new SvidIssuer({
    cache, clock: fx.clock, log: silentLogger(), random: () => 0.5,
    sign: async (items) => {
      calls.push(items.map((i) => i.entryId));
      const signed = await real.sign(items);
      if (calls.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return signed;
    },
  });
  return { issuer, calls, answer: () => release!() };
}

test('an SVID answered after its authority was tainted (signed just before) is served, then re-signed at once', async () => {
  const cache = fx.cache();
  // The first answer is still on the wire when the taint reaches the agent.
  const { issuer, calls, answer } = issuerHoldingFirstAnswer(cache);
  const e = entry('taint-race', ['unix:uid:81']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const intermediate = parseCertificate(fx.issue(e).chain[1]!).subjectKeyId!;
  issuer.setTainted([intermediate]);
  answer();
  await settle();
  assert.equal(parseCertificate(cache.svid(e.id)!.chain[1]!).subjectKeyId, intermediate, 'served meanwhile: it is valid');
  fx.clock.advance(0);
  await settle();
  issuer.stop();
  assert.equal(calls.length, 2, 're-signed at once, not at half-life');
});

test('a TTL change whose new SVID had not arrived when the agent stopped is re-signed after the restart', async () => {
  const t = tempDir('meshid-inputs-');
  try {
    const dir = path.join(t.dir, 'data');
    let store = AgentStore.open(dir, silentLogger());
    let cache = fx.cache();
    let serverUp = true;
    const real = fx.signer(cache);
    let issuer = new SvidIssuer({
      cache, clock: fx.clock, log: silentLogger(), random: () => 0.5,
      sign: async (items) => {
        if (!serverUp) throw unavailable('server down');
        return real.sign(items);
      },
    });
    const e1 = entry('ttl-change', ['unix:uid:77'], { x509_svid_ttl: 86400 });
    issuer.request(cache.apply({ upserts: [e1] }).needSvid);
    await settle();
    assert.ok(Math.abs(cache.svid(e1.id)!.notAfter - fx.clock.now() - DAY) < 1000, 'a 24 h SVID');
    // The operator lowers the TTL to 1 h; the change arrives, its signing fails, and the agent stops.
    serverUp = false;
    const e2 = entryFromMessage({ ...entryToMessage(e1), x509_svid_ttl: 3600, revision: e1.revision + 1 });
    issuer.request(cache.apply({ upserts: [e2] }).needSvid);
    await settle();
    const bundle = cache.ownBundle()!;
    store.saveState({ trustDomain: bundle.trustDomain, revision: e2.revision, bundle, federatedBundles: [], entries: cache.entries(), svids: cache.allSvids() });
    issuer.stop();
    store.close();

    // Restart as MeshidAgent.start does; the server has nothing to send for the entry (its revision is known).
    fx.clock.advance(60_000);
    store = AgentStore.open(dir, silentLogger());
    const state = store.loadState(fx.clock.now())!;
    cache = fx.cache();
    cache.apply({ upserts: state.entries, bundle: state.bundle });
    cache.putSvids(state.svids);
    const signer = fx.signer(cache);
    issuer = new SvidIssuer({ cache, sign: signer.sign, clock: fx.clock, log: silentLogger(), random: () => 0.5 });
    issuer.reconcile();
    await settle();
    store.close();
    issuer.stop();
    assert.ok(signer.calls.some((c) => c.includes(e1.id)), 'signed again for the new TTL');
    assert.ok(Math.abs(cache.svid(e1.id)!.notAfter - fx.clock.now() - HOUR) < 1000, 'a 1 h SVID');
  } finally {
    t.cleanup();
  }
});

test('an entry its signing call could not reach the server for is not waited for; one refused for another reason is', async () => {
  for (const [failure, waited] of [[unavailable('the server is down'), false], [new MeshidError('internal', 'a bug'), true]] as const) {
    const { cache, issuer } = issuerWith(async () => Promise.reject(failure));
    const cached = entry(`cached-${failure.code}`, ['unix:uid:95'], { created_at: 1 });
    const fresh = entry(`fresh-${failure.code}`, ['unix:uid:95'], { created_at: 2 });
    cache.apply({ upserts: [cached] });
    cache.putSvids([fx.issue(cached)]);
    issuer.request(cache.apply({ upserts: [fresh] }).needSvid);
    await settle();
    const s = cache.snapshot([{ type: 'unix', value: 'uid:95' }]);
    assert.equal(s.complete, !waited, failure.code);
    assert.equal(s.defaultSvid?.spiffeId, cached.spiffeId);
    issuer.stop();
  }
});

test('an SVID refused again on its retry (per item or per call) is no longer waited for: the first message goes out with the rest', async () => {
  for (const mode of ['item', 'call'] as const) {
    let refused = '';
    const { cache, issuer } = issuerFronting(async (items, real) => {
      if (mode === 'call' && items.some((i) => i.entryId === refused)) throw new MeshidError('internal', 'a bug');
      const itemRefused = mode === 'item' ? refused : '';
      return (await real(items)).map((r) => (r.entryId === itemRefused ? { entryId: r.entryId, code: 13, message: 'cannot sign this one', chain: [] } : r));
    });
    const served = entry(`served-${mode}`, ['unix:uid:96'], { created_at: 1 });
    const stuck = entry(`stuck-${mode}`, ['unix:uid:96'], { created_at: 2 });
    refused = stuck.id;
    issuer.request(cache.apply({ upserts: [served] }).needSvid);
    await settle();
    issuer.request(cache.apply({ upserts: [stuck] }).needSvid);
    await settle();
    const selectors = [{ type: 'unix', value: 'uid:96' }];
    assert.equal(cache.snapshot(selectors).complete, false, `${mode}: a first refusal is waited through`);
    fx.clock.advance(1500);
    await settle();
    const s = cache.snapshot(selectors);
    assert.equal(s.complete, true, `${mode}: refused again, it is no longer waited for`);
    assert.equal(s.defaultSvid?.spiffeId, served.spiffeId);
    assert.deepEqual(s.svids.map((v) => v.entryId), [served.id]);
    refused = '';
    fx.clock.advance(3000);
    await settle();
    assert.deepEqual(cache.snapshot(selectors).svids.map((v) => v.entryId).sort(), [served.id, stuck.id].sort(), `${mode}: still retried, and served once signed`);
    issuer.stop();
  }
});

test('an entry changed while its signing call was out is waited through its own first failure: the old call\'s failure does not count for it', async () => {
  let release: (err: Error) => void = () => undefined;
  let calls = 0;
  const { cache, issuer } = issuerFronting(async (items, real) => {
    calls++;
    if (calls === 1) return new Promise<SignedItem[]>((_, reject) => (release = reject));
    if (calls === 2) throw new MeshidError('internal', 'a bug');
    return real(items);
  });
  const before = entry('changed-in-flight', ['unix:uid:95']);
  issuer.request(cache.apply({ upserts: [before] }).needSvid);
  await settle();
  assert.equal(calls, 1);
  const after = entryFromMessage({ ...entryToMessage(before), x509_svid_ttl: 3600, revision: before.revision + 1 });
  issuer.request(cache.apply({ upserts: [after] }).needSvid);
  release(new MeshidError('internal', 'a bug'));
  await settle();
  assert.equal(calls, 2, 'the changed entry is signed again at once, and that call fails too');
  const selectors = [{ type: 'unix', value: 'uid:95' }];
  assert.equal(cache.snapshot(selectors).complete, false, 'its first failure is waited through, as for any new certificate');
  fx.clock.advance(1500);
  await settle();
  assert.deepEqual(cache.snapshot(selectors).svids.map((v) => v.entryId), [after.id]);
  issuer.stop();
});

test('a signing budget refusal (RESOURCE_EXHAUSTED with a retry hint) is waited for, retried no sooner than the hint, and then served whole', async () => {
  let refusing = true;
  const calls: number[] = [];
  const { cache, issuer } = issuerFronting(async (items, real) => {
    calls.push(fx.clock.now());
    if (refusing && items.length > 1) throw resourceExhausted('signing rate limit reached; retry in 4 s');
    return real(items);
  });
  const selectors = [{ type: 'unix', value: 'uid:97' }];
  const first = entry('budget-first', ['unix:uid:97'], { created_at: 1 });
  issuer.request(cache.apply({ upserts: [first] }).needSvid);
  await settle();
  const added = [entry('budget-second', ['unix:uid:97'], { created_at: 2 }), entry('budget-third', ['unix:uid:97'], { created_at: 3 })];
  issuer.request(cache.apply({ upserts: added }).needSvid);
  await settle();
  const refusedAt = fx.clock.now();
  assert.equal(cache.snapshot(selectors).complete, false, 'the refused SVIDs are waited for');
  fx.clock.advance(3999);
  await settle();
  assert.equal(calls.length, 2, 'no retry before the 4 s the server asked for');
  // Refused again and again: still waited for while the next try falls within the window.
  for (let waited = 3999; waited < BUDGET_REFUSALS_WAITED_FOR_MS - 8000; waited += 1000) {
    fx.clock.advance(1000);
    await settle();
    assert.equal(cache.snapshot(selectors).complete, false, `still waited for ${waited + 1000} ms after the first refusal`);
  }
  assert.ok(calls.length > 2 && calls.slice(2).every((at, i) => at - (calls[i + 1] ?? refusedAt) >= 4000), 'each retry after the hint');
  refusing = false;
  fx.clock.advance(6000);
  await settle();
  const s = cache.snapshot(selectors);
  assert.equal(s.complete, true);
  assert.deepEqual(s.svids.map((v) => v.entryId).sort(), [first.id, ...added.map((e) => e.id)].sort(), 'all three, none left out');
  issuer.stop();
});

test('a signing budget refusal is no longer waited for once it has lasted the window, nor when its retry hint lies beyond it; an outage never is', async () => {
  assert.ok(BUDGET_REFUSALS_WAITED_FOR_MS < DEFAULT_PENDING_TIMEOUT_MS, 'a first message that waited in vain goes out before its stream would end UNAVAILABLE');
  for (const [name, failure] of [
    ['a long hint', resourceExhausted(`signing rate limit reached; retry in ${BUDGET_REFUSALS_WAITED_FOR_MS / 1000 + 1} s`)],
    ['a budget that stays spent', resourceExhausted('signing rate limit reached; retry in 2 s')],
    ['an older server (UNAVAILABLE)', unavailable('signing rate limit reached; retry in 2 s')],
  ] as const) {
    const { cache, issuer } = issuerFronting(async (items, real) => {
      if (items.length > 1 || items[0]!.entryId !== served.id) throw failure;
      return real(items);
    });
    const selectors = [{ type: 'unix', value: 'uid:98' }];
    const served = entry(`served-${name.replace(/\W+/g, '-')}`, ['unix:uid:98'], { created_at: 1 });
    const refused = entry(`refused-${name.replace(/\W+/g, '-')}`, ['unix:uid:98'], { created_at: 2 });
    issuer.request(cache.apply({ upserts: [served] }).needSvid);
    await settle();
    issuer.request(cache.apply({ upserts: [refused] }).needSvid);
    await settle();
    if (name === 'a budget that stays spent') {
      assert.equal(cache.snapshot(selectors).complete, false, `${name}: waited for at first`);
      for (let t = 0; t < BUDGET_REFUSALS_WAITED_FOR_MS && !cache.snapshot(selectors).complete; t += 1000) {
        fx.clock.advance(1000);
        await settle();
      }
    }
    const s = cache.snapshot(selectors);
    assert.equal(s.complete, true, `${name}: the first message goes out with what there is`);
    assert.deepEqual(s.svids.map((v) => v.entryId), [served.id]);
    issuer.stop();
  }
});

test('a signing budget refusal holds every call until its hint: the other queued batches, kicked and new entries are not sent to be refused too', async () => {
  let refusing = true;
  const calls: number[] = [];
  const { cache, issuer } = issuerFronting(
    async (items, real) => {
      calls.push(fx.clock.now());
      if (refusing) throw resourceExhausted('signing rate limit reached; retry in 5 s');
      return real(items);
    },
    { batchSize: 1, maxInflight: 1 },
  );
  const entries = [1, 2, 3].map((n) => entry(`budget-hold-${n}`, ['unix:uid:96'], { created_at: n }));
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  const refusedAt = calls[0]!;
  assert.equal(calls.length, 1, 'one refused call, not one per queued batch');
  issuer.kick();
  issuer.request(cache.apply({ upserts: [entry('budget-hold-4', ['unix:uid:96'], { created_at: 4 })] }).needSvid);
  await settle();
  assert.equal(calls.length, 1, 'neither a reconnect (kick) nor a new entry sends a call before the hint');
  assert.equal(cache.snapshot([{ type: 'unix', value: 'uid:96' }]).complete, false, 'the held entries are still waited for');
  fx.clock.advance(4999);
  await settle();
  assert.equal(calls.length, 1, 'no call before the 5 s the server asked for');
  refusing = false;
  fx.clock.advance(2000);
  await settle();
  assert.ok(calls.slice(1).every((at) => at - refusedAt >= 5000), 'every later call after the hint');
  const s = cache.snapshot([{ type: 'unix', value: 'uid:96' }]);
  assert.equal(s.complete, true);
  assert.equal(s.svids.length, 4, 'all four signed once the wait was over');
  issuer.stop();
});

/**
 * An IdentityCache whose JWT signer, and an issuer whose X.509 signer, record when each is called and then answer as
 * `jwt` and `x509` say (x509 gets the cache, to sign through the fixture's CA), for the tests of the shared budget wait.
 */
function recordingSigners(
  jwt: () => Promise<never>,
  x509: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>, cache: IdentityCache) => Promise<SignedItem[]>,
  extra: Partial<ConstructorParameters<typeof SvidIssuer>[0]> = {},
) {
  const jwtCalls: number[] = [];
  const x509Calls: number[] = [];
  const cache = fx.cache(async () => {
    jwtCalls.push(fx.clock.now());
    return jwt();
  });
  const sign = async (items: ReadonlyArray<{ entryId: string; csr: Buffer }>): Promise<SignedItem[]> => {
    x509Calls.push(fx.clock.now());
    return x509(items, cache);
  };
  const issuer = new SvidIssuer({ cache, sign, clock: fx.clock, log: silentLogger(), random: () => 0, ...extra });
  return { cache, issuer, jwtCalls, x509Calls };
}

test('X.509 and JWT signing wait out one budget: a refusal of either holds the other until its hint', async () => {
  let jwtRefusing = true;
  let x509Refusing = false;
  const { cache, issuer, jwtCalls, x509Calls } = recordingSigners(
    async () => {
      if (jwtRefusing) throw resourceExhausted('signing rate limit reached; retry in 5 s');
      throw unavailable('not signing JWT-SVIDs in this test');
    },
    async (items, c) => {
      if (x509Refusing) throw resourceExhausted('signing rate limit reached; retry in 5 s');
      return fx.signer(c).sign(items);
    },
  );
  const jwtEntry = entry('shared-budget-jwt', ['unix:uid:94'], { created_at: 1 });
  cache.apply({ upserts: [jwtEntry] });
  // A deadline before the retry time: the refusal comes back to the caller instead of being waited out.
  const shortDeadline = (): number => fx.clock.now() + 1000;
  const budgetRefused = (e: unknown): boolean => e instanceof MeshidError && /refusing to sign for now/.test(e.message);

  // A JWT-SVID refused: the X.509-SVID of a new entry is not sent before the hint.
  await assert.rejects(cache.fetchJwtSvids([{ type: 'unix', value: 'uid:94' }], ['db'], undefined, shortDeadline()), budgetRefused);
  assert.equal(jwtCalls.length, 1);
  const jwtRefusedAt = jwtCalls[0]!;
  issuer.request(cache.apply({ upserts: [entry('shared-budget-x509', ['unix:uid:93'], { created_at: 2 })] }).needSvid);
  await settle();
  fx.clock.advance(4999);
  await settle();
  assert.equal(x509Calls.length, 0, 'no SignX509Svids before the 5 s a SignJwtSvid refusal asked for');
  fx.clock.advance(1001);
  await settle();
  assert.equal(x509Calls.length, 1, 'sent once the wait is over');
  assert.ok(x509Calls[0]! - jwtRefusedAt >= 5000);
  assert.equal(cache.snapshot([{ type: 'unix', value: 'uid:93' }]).complete, true);

  // An X.509-SVID refused: a JWT-SVID asked for meanwhile is refused without a call, then signed after the hint.
  jwtRefusing = false;
  x509Refusing = true;
  issuer.request(cache.apply({ upserts: [entry('shared-budget-x509-2', ['unix:uid:92'], { created_at: 3 })] }).needSvid);
  await settle();
  assert.equal(x509Calls.length, 2);
  const x509RefusedAt = x509Calls[1]!;
  await assert.rejects(cache.fetchJwtSvids([{ type: 'unix', value: 'uid:94' }], ['db'], undefined, shortDeadline()), budgetRefused);
  assert.equal(jwtCalls.length, 1, 'no SignJwtSvid during the wait a SignX509Svids refusal asked for');
  x509Refusing = false;
  fx.clock.advance(5000);
  await settle();
  await assert.rejects(cache.fetchJwtSvids([{ type: 'unix', value: 'uid:94' }], ['db'], undefined, shortDeadline()), /not signing JWT-SVIDs in this test/);
  assert.equal(jwtCalls.length, 2, 'signed again once the wait is over');
  assert.ok(jwtCalls[1]! - x509RefusedAt >= 5000);
  issuer.stop();
});

test('an X.509 call backoff past the server\'s wait holds X.509 signing alone: a JWT-SVID is signed once the server\'s wait is over', async () => {
  const { cache, issuer, jwtCalls, x509Calls } = recordingSigners(
    async () => {
      throw unavailable('not signing JWT-SVIDs in this test');
    },
    async () => {
      throw resourceExhausted('signing rate limit reached; retry in 1 s');
    },
    // Stands for a run of refusals in a storm, each doubling the call backoff: this one is already at 30 s.
    { retryBackoff: { initialMs: 60_000, maxMs: 300_000, multiplier: 2 } },
  );
  cache.apply({ upserts: [entry('own-backoff-jwt', ['unix:uid:91'], { created_at: 1 })] });
  issuer.request(cache.apply({ upserts: [entry('own-backoff-x509', ['unix:uid:90'], { created_at: 2 })] }).needSvid);
  await settle();
  assert.equal(x509Calls.length, 1);
  const refusedAt = x509Calls[0]!;
  const outcome = cache.fetchJwtSvids([{ type: 'unix', value: 'uid:91' }], ['db'], undefined, fx.clock.now() + 10_000).then(
    () => 'signed',
    (e: Error) => e.message,
  );
  await settle();
  fx.clock.advance(2000);
  await settle();
  assert.match(await outcome, /not signing JWT-SVIDs in this test/, 'signed after the 1 s the server asked for, not refused for the X.509 backoff');
  assert.equal(jwtCalls.length, 1);
  assert.ok(jwtCalls[0]! - refusedAt >= 1000, 'not before the server\'s wait');
  // The X.509 queue keeps its own backoff: a new entry waits for it.
  issuer.request(cache.apply({ upserts: [entry('own-backoff-x509-2', ['unix:uid:89'], { created_at: 3 })] }).needSvid);
  await settle();
  fx.clock.advance(20_000);
  await settle();
  assert.equal(x509Calls.length, 1, 'no SignX509Svids within the X.509 call backoff');
  issuer.stop();
});

test('after a wait an X.509 refusal asked for, JWT signings go one at a time: one refused call, not one per waiting audience', async () => {
  const refuse = async (): Promise<never> => {
    throw resourceExhausted('signing rate limit reached; retry in 5 s');
  };
  const { cache, issuer, jwtCalls, x509Calls } = recordingSigners(refuse, refuse);
  cache.apply({ upserts: [entry('x509-held-jwt', ['unix:uid:88'], { created_at: 1 })] });
  issuer.request(cache.apply({ upserts: [entry('x509-held-x509', ['unix:uid:87'], { created_at: 2 })] }).needSvid);
  await settle();
  assert.equal(x509Calls.length, 1);
  issuer.stop();
  const deadline = fx.clock.now() + 60_000;
  const outcomes = ['a', 'b', 'c'].map((aud) =>
    cache.fetchJwtSvids([{ type: 'unix', value: 'uid:88' }], [aud], undefined, deadline).then(
      () => 'signed',
      (e: Error) => e.message,
    ),
  );
  await settle();
  assert.equal(jwtCalls.length, 0, 'no SignJwtSvid during the X.509 refusal\'s wait');
  fx.clock.advance(5000);
  await settle();
  assert.equal(jwtCalls.length, 1, 'one SignJwtSvid once the wait is over, refused: the other two audiences wait without a call');
  fx.clock.advance(60_000);
  await settle();
  await Promise.all(outcomes);
});

test('a throw in onSigned (the clock-skew reading) is logged, and the SVID is checked and served as usual', async () => {
  const seen: Array<{ notBefore: number; sentAt: number }> = [];
  const { cache, issuer } = issuerSigning({
    onSigned: (leaf, sentAt) => {
      seen.push({ notBefore: leaf.notBefore, sentAt });
      throw new Error('skew reader broke');
    },
  });
  const e = entry('skew-reader-throws', ['unix:uid:6']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  assert.equal(seen.length, 1, 'the leaf was handed to the skew reader');
  const svid = cache.svid(e.id);
  assert.ok(svid !== undefined, 'the SVID is served');
  assert.equal(seen[0]!.notBefore, parseCertificate(svid.chain[0]!).notBefore);
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 }, 'no failure counted for the entry');
  issuer.stop();
});

test('a batch whose keys were being made when the issuer stopped is not sent', async () => {
  const { cache, signer, issuer } = issuerSigning();
  issuer.request(cache.apply({ upserts: [entry('s1', ['unix:uid:1']), entry('s2', ['unix:uid:1'])] }).needSvid);
  // The batch is taken from the queue, its keys and CSRs are made in a turn of their own.
  for (let i = 0; i < 20 && issuer.pending().inflight === 0; i++) await new Promise((r) => setImmediate(r));
  assert.equal(issuer.pending().inflight, 2, 'the batch is on its way');
  assert.equal(signer.calls.length, 0, 'and not sent yet');
  issuer.stop();
  await settle();
  assert.equal(signer.calls.length, 0, 'a stopped issuer sends nothing');
  assert.equal(issuer.pending().inflight, 0);
});

/**
 * A 10 min SVID whose renewal keeps failing from its renewal time, the Sync stream up (no kick()), until `recoverLeftMs`
 * before it expires. Steps the clock a second at a time, as a real clock fires each retry; returns the attempts' clock
 * times, the SVID first held, and whether that SVID was replaced before it expired.
 */
async function failingRenewal(name: string, uid: number, fail: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => SignedItem[], recoverLeftMs: number) {
  let failing = false;
  const attempts: number[] = [];
  const { cache, issuer } = issuerFronting(async (items, real) => {
    if (!failing) return real(items);
    attempts.push(fx.clock.now());
    return fail(items);
  });
  const e = entry(name, [`unix:uid:${uid}`], { x509_svid_ttl: 600 });
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const held = cache.svid(e.id)!;
  failing = true;
  while (fx.clock.now() < held.notAfter - 1000 && cache.svid(e.id)?.version === held.version) {
    if (fx.clock.now() >= held.notAfter - recoverLeftMs) failing = false;
    fx.clock.advance(1000);
    await settle();
  }
  const replaced = cache.svid(e.id) !== undefined && cache.svid(e.id)!.version !== held.version;
  issuer.stop();
  return { attempts, held, replaced };
}

test('a short SVID whose renewal keeps failing (per item or per call) is retried within a quarter of the time it has left, and renewed before it expires once signing recovers', async () => {
  const internalItems = (items: ReadonlyArray<{ entryId: string }>): SignedItem[] => items.map((i) => ({ entryId: i.entryId, code: 13, message: 'internal error', chain: [] }));
  for (const mode of ['item', 'call'] as const) {
    const fail = mode === 'item' ? internalItems : (): never => {
      throw new MeshidError('internal', 'a bug');
    };
    // Recovers with 60 s left: the doubling alone (0.75, 1.5, … 192 s with this jitter) has its next try after expiry.
    const { attempts, held, replaced } = await failingRenewal(`expiry-bound-${mode}`, 150, fail, 60_000);
    assert.ok(attempts.length > 0 && attempts[0]! < held.notAfter - 4 * 60_000, `${mode}: renewal failed from its renewal time`);
    for (let i = 1; i < attempts.length; i++) {
      const left = held.notAfter - attempts[i - 1]!;
      // Within a quarter of what was left at the try before, or 5 s (the clock steps a second at a time).
      assert.ok(attempts[i]! - attempts[i - 1]! <= Math.max(5000, left / 4) + 1000, `${mode}: try ${i} came ${attempts[i]! - attempts[i - 1]!} ms after the one before, with ${left} ms left`);
    }
    assert.ok(attempts.some((t) => held.notAfter - t <= 60_000 + 15_000 && held.notAfter - t > 60_000), `${mode}: a try in the quarter of a minute before recovery`);
    assert.ok(replaced, `${mode}: renewed before the SVID expired, not after`);
  }
});

test('a short SVID\'s retries near expiry still wait out each signing budget refusal, however little time it has left', async () => {
  const refuse = (): never => {
    throw resourceExhausted('signing rate limit reached; retry in 8 s');
  };
  // Refused until 12 s before expiry: for the last 32 s the bound (a quarter of what is left, at least 5 s) is under
  // the server's 8 s.
  const { attempts, held, replaced } = await failingRenewal('expiry-bound-budget', 151, refuse, 12_000);
  assert.ok(attempts.length > 2);
  for (let i = 1; i < attempts.length; i++) {
    assert.ok(attempts[i]! - attempts[i - 1]! >= 8000, `try ${i} came ${attempts[i]! - attempts[i - 1]!} ms after a refusal that asked for 8 s`);
  }
  assert.ok(attempts.some((t) => held.notAfter - t < 32_000), 'refused again where the bound is under the server\'s wait');
  assert.ok(replaced, 'renewed before the SVID expired, once the server signs again');
});

test('a failing call carrying a 24 h and a 10 min SVID is retried, both together, within a quarter of the time the 10 min one has left', async () => {
  let failing = true;
  const calls: Array<{ at: number; ids: string[] }> = [];
  const { cache, issuer } = issuerFronting(async (items, real) => {
    if (!failing) return real(items);
    calls.push({ at: fx.clock.now(), ids: items.map((i) => i.entryId).sort() });
    throw new MeshidError('internal', 'a bug');
  });
  const long = entry('batch-bound-24h', ['unix:uid:152']);
  const short = entry('batch-bound-10min', ['unix:uid:152'], { x509_svid_ttl: 600 });
  cache.apply({ upserts: [long, short] });
  cache.putSvids([fx.issue(long, DAY), fx.issue(short, 10 * 60_000)]);
  const held = cache.svid(short.id)!;
  // Both re-signed at once (as after a taint), in one call that keeps failing until 60 s before the short one expires.
  issuer.request([long, short]);
  await settle();
  while (fx.clock.now() < held.notAfter - 1000 && cache.svid(short.id)?.version === held.version) {
    if (fx.clock.now() >= held.notAfter - 60_000) failing = false;
    fx.clock.advance(1000);
    await settle();
  }
  assert.ok(calls.length > 2);
  assert.ok(calls.every((c) => c.ids.join() === [long.id, short.id].sort().join()), 'one round for both');
  for (let i = 1; i < calls.length; i++) {
    const left = held.notAfter - calls[i - 1]!.at;
    assert.ok(calls[i]!.at - calls[i - 1]!.at <= Math.max(5000, left / 4) + 1000, `call ${i} came ${calls[i]!.at - calls[i - 1]!.at} ms after the one before, with ${left} ms left on the 10 min SVID`);
  }
  assert.notEqual(cache.svid(short.id)?.version, held.version, 'the 10 min SVID renewed before it expired');
  issuer.stop();
});

test('near its expiry a served SVID\'s retries come no closer than 5 s apart (SPIRE\'s sync interval), per item and per call, so a fleet whose SVIDs run out together does not hammer a failing server', async () => {
  const unavailableItems = (items: ReadonlyArray<{ entryId: string }>): SignedItem[] => items.map((i) => ({ entryId: i.entryId, code: 14, message: 'unavailable', chain: [] }));
  for (const mode of ['item', 'call'] as const) {
    const fail = mode === 'item' ? unavailableItems : (): never => {
      throw unavailable('connection reset');
    };
    // Never recovers: the last tries are those in the SVID's last seconds.
    const { attempts, held } = await failingRenewal(`expiry-floor-${mode}`, 153, fail, 0);
    const last = attempts.filter((t) => held.notAfter - t < 60_000);
    assert.ok(last.length > 3, `${mode}: ${last.length} tries in the SVID's last minute`);
    for (let i = 1; i < last.length; i++) {
      // The floor's equal jitter: 2.5-5 s, never the 0.5-1 s of a 1 s floor.
      assert.ok(last[i]! - last[i - 1]! >= 2500, `${mode}: a try ${last[i]! - last[i - 1]!} ms after the one before, ${held.notAfter - last[i - 1]!} ms before expiry`);
    }
    assert.ok(attempts.some((t) => held.notAfter - t <= 10_000), `${mode}: still tried in the SVID's last 10 s`);
  }
});

/** Lets the key generation and signing promises run until `done` holds (a bound on turns, not a time). */
async function settleUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !done(); i++) await new Promise((r) => setImmediate(r));
}

test('by default a burst goes in calls of 250 CSRs, at most four calls out at once', async () => {
  const cache = fx.cache();
  const calls: string[][] = [];
  // The server never answers: what is out stays out, and what waits shows.
  const issuer = new SvidIssuer({ cache, sign: async (items) => (calls.push(items.map((i) => i.entryId)), new Promise<SignedItem[]>(() => undefined)), clock: fx.clock, log: silentLogger(), random: () => 0.5 });
  const entries = Array.from({ length: 1001 }, (_, i) => entry(`burst-${i}`, [`unix:uid:${40_000 + i}`]));
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settleUntil(() => calls.length >= 4);
  await settle();
  assert.deepEqual(calls.map((c) => c.length), [250, 250, 250, 250], 'four calls of 250; the 1,001st entry waits for a call to end');
  assert.deepEqual(issuer.pending(), { queued: 1, inflight: 1000, failing: 0 });
  issuer.stop();
});

test('the rotation jitter shifts each renewal by up to a tenth of the life it is held for: random 0.25 renews at 45 %, 0.75 at 55 %', async () => {
  for (const [random, share] of [[0.25, 0.45], [0.75, 0.55]] as const) {
    const { cache, issuer } = issuerSigning({ random: () => random });
    const e = entry(`jitter-${random}`, [`unix:uid:${7000 + random * 100}`]);
    issuer.request(cache.apply({ upserts: [e] }).needSvid);
    await settle();
    const first = cache.svid(e.id)!;
    const held = heldLifetime(first, fx.clock.now());
    const due = Math.ceil(held.notBefore + (held.notAfter - held.notBefore) * share);
    fx.clock.advance(due - fx.clock.now() - 1);
    await settle();
    assert.equal(cache.svid(e.id)!.version, first.version, `random ${random}: not renewed before ${share * 100} % of its life`);
    fx.clock.advance(1);
    await settle();
    assert.notEqual(cache.svid(e.id)!.version, first.version, `random ${random}: renewed at ${share * 100} % of its life`);
    issuer.stop();
  }
});

test('a kick starts the backoff over: a call that fails again after a reconnect is retried after the first delay, not the grown one', async () => {
  const attempts: number[] = [];
  const { cache, issuer } = issuerWith(async () => {
    attempts.push(fx.clock.now());
    throw unavailable('connection refused');
  });
  const e = entry('kick-backoff', ['unix:uid:6']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  // random 0.5: the delays are 750, 1500, 3000 ms …
  for (const delay of [750, 1500]) {
    fx.clock.advance(delay);
    await settle();
  }
  assert.equal(attempts.length, 3, 'the third failure sets the next round 3 s out');
  fx.clock.advance(100);
  issuer.kick();
  await settle();
  assert.equal(attempts.length, 4, 'kicked: tried at once');
  fx.clock.advance(749);
  await settle();
  assert.equal(attempts.length, 4);
  fx.clock.advance(1);
  await settle();
  assert.equal(attempts.length, 5, 'the failure after the kick waits the first delay (750 ms), not the round set before it nor the grown backoff');
  issuer.stop();
});

test('an entry whose first signing is out when the issuer reconciles (a reconnect) is not signed a second time', async () => {
  const cache = fx.cache();
  const { issuer, calls, answer } = issuerHoldingFirstAnswer(cache);
  const e = entry('reconcile-inflight', ['unix:uid:82']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  assert.equal(calls.length, 1);
  issuer.reconcile();
  await settle();
  answer();
  await settle();
  assert.ok(cache.svid(e.id));
  assert.equal(calls.length, 1, 'the answer that was out is the SVID; no second call');
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 });
  issuer.stop();
});

test('the same taint set told again (every Sync update carries it whole) does not re-sign at once what the server still signs from it', async () => {
  const { cache, signer, issuer } = issuerSigning();
  const e = entry('taint-repeat', ['unix:uid:83']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  const intermediate = parseCertificate(cache.svid(e.id)!.chain[1]!).subjectKeyId!;
  // The server goes on signing from the tainted intermediate: one re-sign at once, then the backoff.
  issuer.setTainted([intermediate]);
  await settle();
  fx.clock.advance(0);
  await settle();
  const before = signer.calls.length;
  assert.equal(before, 3, 'the first SVID, the re-sign at the taint, the one at once after it still chained to it');
  issuer.setTainted([intermediate]);
  await settle();
  assert.equal(signer.calls.length, before, 'nothing newly tainted: the backoff holds');
  issuer.setTainted([]);
  issuer.resignUnanchored([]);
  await settle();
  assert.equal(signer.calls.length, before, 'a bundle without X.509 roots says nothing about chains: nothing re-signed');
  issuer.stop();
});

test('an entry the server\'s answer leaves out is retried like a refused one, not forgotten without an SVID', async () => {
  const skipped = entry('left-out', ['unix:uid:84']);
  const kept = entry('answered', ['unix:uid:84']);
  let leaveOut = true;
  const { cache, issuer } = issuerFronting(async (items, real) => (await real(items)).filter((r) => !(leaveOut && r.entryId === skipped.id)));
  issuer.request(cache.apply({ upserts: [skipped, kept] }).needSvid);
  await settle();
  assert.ok(cache.svid(kept.id));
  assert.equal(cache.svid(skipped.id), undefined);
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 1 });
  leaveOut = false;
  fx.clock.advance(750);
  await settle();
  assert.ok(cache.svid(skipped.id), 'retried after the first per-item delay');
  issuer.stop();
});

test('a refused item is retried after the first delay (1 s, equal jitter) and warned about; a PERMISSION_DENIED one is told at info only', async () => {
  const cache = fx.cache();
  const real = fx.signer(cache);
  const faulty = entry('item-internal', ['unix:uid:85']);
  const denied = entry('item-denied', ['unix:uid:85']);
  const captured = capturingLogger('svid-issuer');
  const attempts: string[][] = [];
  let refusing = true;
  const issuer = new SvidIssuer({
    cache, clock: fx.clock, log: captured.log, random: () => 0.5,
    sign: async (items) => {
      attempts.push(items.map((i) => i.entryId));
      return (await real.sign(items)).map((r) => {
        if (refusing && r.entryId === faulty.id) return { entryId: r.entryId, code: 13, message: 'internal', chain: [] };
        if (r.entryId === denied.id) return { entryId: r.entryId, code: 7, message: 'not authorized', chain: [] };
        return r;
      });
    },
  });
  issuer.request(cache.apply({ upserts: [faulty, denied] }).needSvid);
  await settle();
  const lines = captured.records().filter((r) => r.msg === 'X509-SVID not issued; will retry' || r.msg === 'the server refused to sign an SVID for this entry');
  assert.deepEqual(lines.filter((r) => r.entryId === faulty.id).map((r) => [r.level, r.msg]), [[LEVEL.warn, 'X509-SVID not issued; will retry']]);
  assert.deepEqual(lines.filter((r) => r.entryId === denied.id).map((r) => [r.level, r.msg]), [[LEVEL.info, 'the server refused to sign an SVID for this entry']]);
  refusing = false;
  fx.clock.advance(749);
  await settle();
  assert.equal(attempts.length, 1, 'not before half the first 1 s');
  fx.clock.advance(1);
  await settle();
  assert.equal(attempts.length, 2);
  assert.ok(cache.svid(faulty.id), 'retried after 750 ms (random 0.5), not after the second delay');
  issuer.stop();
});

test('a call that succeeds starts the call backoff over: the next outage is retried after the first delay', async () => {
  const attempts: number[] = [];
  let down = true;
  const { cache, issuer } = issuerFronting(async (items, real) => {
    attempts.push(fx.clock.now());
    if (down) throw unavailable('connection refused');
    return real(items);
  });
  issuer.request(cache.apply({ upserts: [entry('reset-a', ['unix:uid:86'])] }).needSvid);
  await settle();
  for (const delay of [750, 1500]) {
    fx.clock.advance(delay);
    await settle();
  }
  down = false;
  fx.clock.advance(3000);
  await settle();
  assert.equal(attempts.length, 4, 'three failures, then signed');
  down = true;
  issuer.request(cache.apply({ upserts: [entry('reset-b', ['unix:uid:86'])] }).needSvid);
  await settle();
  assert.equal(attempts.length, 5);
  fx.clock.advance(750);
  await settle();
  assert.equal(attempts.length, 6, 'retried after 750 ms, not the 6 s the fourth delay would be');
  issuer.stop();
});

test('a signing budget refusal is retried at its hint plus the jitter (up to a second), so refused agents do not all come back at once', async () => {
  const attempts: number[] = [];
  let refusing = true;
  const { cache, issuer } = issuerFronting(async (items, real) => {
    attempts.push(fx.clock.now());
    if (refusing) throw resourceExhausted('signing rate limit reached; retry in 4 s');
    return real(items);
  });
  const e = entry('budget-jitter', ['unix:uid:87']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  refusing = false;
  fx.clock.advance(4499);
  await settle();
  assert.equal(attempts.length, 1, 'random 0.5: half a second past the 4 s asked for');
  fx.clock.advance(1);
  await settle();
  assert.equal(attempts.length, 2);
  assert.ok(cache.svid(e.id));
  issuer.stop();
});

test('an answer for an entry\'s previous certificate inputs (DNS names changed while it was out) is not published under the new ones', async () => {
  const cache = fx.cache();
  const real = fx.signer(cache);
  const gates: Array<() => void> = [];
  const issuer = new SvidIssuer({
    cache, clock: fx.clock, log: silentLogger(), random: () => 0.5,
    sign: async (items) => {
      await new Promise<void>((r) => gates.push(r));
      return real.sign(items);
    },
  });
  const e1 = entry('dns-in-flight', ['unix:uid:88'], { dns_names: ['a.example'] });
  issuer.request(cache.apply({ upserts: [e1] }).needSvid);
  await settle();
  const e2 = entryFromMessage({ ...entryToMessage(e1), dns_names: ['b.example'], revision: e1.revision + 1 });
  issuer.request(cache.apply({ upserts: [e2] }).needSvid);
  gates.shift()!();
  await settle();
  assert.equal(cache.svid(e1.id), undefined, 'the answer for a.example is not taken for the entry that now names b.example');
  gates.shift()!();
  await settle();
  assert.ok(cache.svid(e1.id), 'the answer for the inputs asked last is');
  assert.equal(real.calls.length, 2);
  issuer.stop();
});
