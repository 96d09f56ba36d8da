/**
 * The SVID issuer's retry times against the bounds they must keep (a served SVID's expiry, an item's own backoff), the
 * handling of a malformed answer, the answer-size bound of a call, and what it keeps per entry: the cases a mutation round found no test for.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SvidIssuer, type SignedItem } from '../../../src/agent/cache/svid-issuer.js';
import { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import { backoffDelay, type BackoffPolicy } from '../../../src/agent/client/backoff.js';
import { CaChainBytes, expectedAnswerBytes, SIGN_ANSWER_BYTES } from '../../../src/agent/cache/x509-svid-request.js';
import { MeshidError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import { DAY, entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

type Signer = (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>;

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

/** The issuer's default retry policy, spelled out so a test can compute a retry time. */
const POLICY: BackoffPolicy = { initialMs: 1000, maxMs: 300_000, multiplier: 2 };
const half = (): number => 0.5;

const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

/** An issuer over a fresh fixture cache whose calls are recorded (time, entry IDs) and answered by `answer`. */
function recordingIssuer(answer: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>, real: Signer) => Promise<SignedItem[]>) {
  const cache = fx.cache();
  const real = fx.signer(cache).sign;
  const calls: Array<{ at: number; ids: string[] }> = [];
  const issuer = new SvidIssuer({
    cache,
    clock: fx.clock,
    log: silentLogger(),
    random: half,
    retryBackoff: POLICY,
    sign: async (items) => {
      calls.push({ at: fx.clock.now(), ids: items.map((i) => i.entryId) });
      return answer(items, real);
    },
  });
  return { cache, issuer, calls };
}

/** Advances the clock a second at a time until `done` or `until`. */
async function runUntil(until: number, done: () => boolean): Promise<void> {
  while (fx.clock.now() < until && !done()) {
    fx.clock.advance(1000);
    await settle();
  }
}

test('a failing call whose served SVID ends before the retry round ahead starts a round of its own instead of joining that round', async () => {
  const failing = new Set<string>();
  const { cache, issuer, calls } = recordingIssuer(async (items, real) => {
    if (items.some((i) => failing.has(i.entryId))) throw new MeshidError('internal', 'a bug');
    return real(items);
  });
  const unsigned = entry('round-ahead-unsigned', ['unix:uid:301']);
  const short = entry('round-ahead-2min', ['unix:uid:301'], { x509_svid_ttl: 120 });
  cache.apply({ upserts: [unsigned, short] });
  // An entry with no SVID fails call after call: the call backoff grows until the next round is minutes ahead.
  failing.add(unsigned.id);
  issuer.request([unsigned]);
  await settle();
  const gap = (): number => (calls.length < 2 ? 0 : calls.at(-1)!.at - calls.at(-2)!.at);
  while (gap() < 90_000) {
    fx.clock.advance(1000);
    await settle();
  }
  // The round ahead is about 190 s away. Now a 2 min SVID's renewal fails once: it must not wait for that round.
  cache.putSvids([fx.issue(short, 120_000)]);
  const held = cache.svid(short.id)!;
  failing.add(short.id);
  issuer.request([short]);
  await settle();
  assert.deepEqual(calls.at(-1)!.ids, [short.id], 'the renewal went out on its own and failed');
  failing.delete(short.id);
  await runUntil(held.notAfter, () => cache.svid(short.id)?.version !== held.version);
  assert.ok(cache.svid(short.id) !== undefined && cache.svid(short.id)!.version !== held.version, 'renewed before it expired, not at the round ahead');
  issuer.stop();
});

test('a second item for one entry in an answer is ignored: a failure after its SVID schedules no retry', async () => {
  const { cache, issuer, calls } = recordingIssuer(async (items, real) => {
    const signed = await real(items);
    return [...signed, ...signed.map((r) => ({ entryId: r.entryId, code: 14, message: 'unavailable', chain: [] }))];
  });
  const e = entry('duplicate-items', ['unix:uid:302']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await settle();
  assert.ok(cache.svid(e.id) !== undefined, 'the first item (signed) is taken');
  assert.deepEqual(issuer.pending(), { queued: 0, inflight: 0, failing: 0 });
  fx.clock.advance(60_000);
  await settle();
  assert.equal(calls.length, 1, 'not signed again before its renewal');
  issuer.stop();
});

test('in one answer a PERMISSION_DENIED item and a failing item keep their own retry times: neither pulls the other sooner or later', async () => {
  let denied: string | undefined;
  const { cache, issuer, calls } = recordingIssuer(async (items) =>
    items.map((i) => (i.entryId === denied ? { entryId: i.entryId, code: 7, message: 'not authorized', chain: [] } : { entryId: i.entryId, code: 13, message: 'internal', chain: [] })),
  );
  const failing = entry('own-wait-failing', ['unix:uid:303']);
  const refused = entry('own-wait-denied', ['unix:uid:303']);
  cache.apply({ upserts: [failing, refused] });
  issuer.request([failing]);
  await settle();
  // Three failures of its own: its fourth try is backoffDelay(2) after the third.
  for (let n = 1; n < 3; n++) {
    fx.clock.advance(backoffDelay(n - 1, POLICY, half));
    await settle();
  }
  assert.equal(calls.length, 3);
  // The refused entry is asked for the moment the failing one's fourth try falls due: both go in that call.
  fx.clock.advance(backoffDelay(2, POLICY, half) - 1);
  await settle();
  denied = refused.id;
  issuer.request([refused]);
  fx.clock.advance(1);
  await settle();
  assert.deepEqual([...calls.at(-1)!.ids].sort(), [failing.id, refused.id].sort());
  // Its first refusal: retried after the first delay, alone; the failing entry (fourth failure) waits its own 6 s.
  const before = calls.length;
  await runUntil(fx.clock.now() + 60_000, () => calls.length > before);
  assert.deepEqual(calls.at(-1)!.ids, [refused.id], 'the refused entry is retried first, and alone');
  issuer.stop();
});

/** The gaps between the calls `sign` gets for an entry whose 10 min SVID is being renewed, until that SVID expires. */
async function retryGapsUntilExpiry(sign: (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>, extra: { onRejected?: () => void } = {}) {
  const cache = fx.cache();
  const calls: number[] = [];
  const issuer = new SvidIssuer({
    cache, clock: fx.clock, log: silentLogger(), random: half, retryBackoff: POLICY, ...extra,
    sign: async (items) => {
      calls.push(fx.clock.now());
      return sign(items);
    },
  });
  const e = entry('gaps', ['unix:uid:304'], { x509_svid_ttl: 600 });
  cache.apply({ upserts: [e] });
  cache.putSvids([fx.issue(e, 600_000)]);
  const held = cache.svid(e.id)!;
  issuer.request([e]);
  await settle();
  await runUntil(held.notAfter, () => false);
  issuer.stop();
  return calls.slice(1).map((at, i) => at - calls[i]!);
}

function assertGrowing(gaps: readonly number[], what: string): void {
  assert.ok(gaps.length >= 5, `${gaps.length} retries`);
  for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i]! >= gaps[i - 1]!, `${what}: retry ${i + 1} came ${gaps[i]} ms after the one before, which came ${gaps[i - 1]} ms after its own: ${gaps.join(', ')}`);
}

test('an entry the server refuses to sign for (PERMISSION_DENIED) keeps its growing backoff near its SVID\'s expiry: no retry within the time left', async () => {
  const gaps = await retryGapsUntilExpiry(async (items) => items.map((i) => ({ entryId: i.entryId, code: 7, message: 'not authorized', chain: [] })));
  assertGrowing(gaps, 'a refused entry');
});

test('a refusal of the agent itself keeps the call backoff growing near an SVID\'s expiry: no retry within the time left', async () => {
  const gaps = await retryGapsUntilExpiry(
    async () => {
      throw new MeshidError('permission_denied', 'banned: agent x is banned');
    },
    { onRejected: () => undefined },
  );
  assertGrowing(gaps, 'a refused agent');
});

test('an SVID whose intermediate is not yet valid on this host\'s clock (the server ahead) is not taken for unanchored: checked within its own validity', async () => {
  // A CA a day ahead of this host: its intermediate, and the SVIDs it signs, start in this host's future.
  const ahead = await openAgentFixture(fx.clock.now() + DAY);
  try {
    const cache = new IdentityCache({ clock: fx.clock, log: silentLogger(), signJwtSvid: async () => Promise.reject(new Error('no JWT signing here')) });
    cache.apply({ bundle: ahead.bundle() });
    cache.markReady();
    let calls = 0;
    const issuer = new SvidIssuer({
      cache, clock: fx.clock, log: silentLogger(), random: half,
      sign: async () => {
        calls++;
        return [];
      },
    });
    const e = entry('server-ahead', ['unix:uid:305']);
    cache.apply({ upserts: [e] });
    cache.putSvids([ahead.issue(e)]);
    issuer.resignUnanchored(ahead.bundle().x509Authorities);
    await settle();
    assert.equal(calls, 0, 'not re-signed: its chain leads to the bundle');
    issuer.stop();
  } finally {
    await ahead.close();
  }
});

test('entries added, signed and removed over and over leave nothing behind in the issuer (renewal times, failures, rotation jitter)', async () => {
  const { cache, issuer } = recordingIssuer(async (items, real) => real(items));
  const kept = entry('churn-kept', ['unix:uid:306']);
  issuer.request(cache.apply({ upserts: [kept] }).needSvid);
  for (let i = 0; i < 20; i++) {
    const e = entry(`churn-${i}`, ['unix:uid:306']);
    issuer.request(cache.apply({ upserts: [e] }).needSvid);
    await settle();
    assert.ok(cache.svid(e.id) !== undefined);
    issuer.forget(cache.apply({ removed: [e.id] }).removed.map((r) => r.id));
  }
  assert.ok(cache.svid(kept.id) !== undefined);
  assert.equal(issuer.trackedEntries(), 1, 'only the entry still held');
  issuer.stop();
});

test('entries with many DNS names go in calls whose expected answers stay within SIGN_ANSWER_BYTES, each as full as the bound lets it', async () => {
  const { cache, issuer, calls } = recordingIssuer(async (items) => items.map((i) => ({ entryId: i.entryId, code: 13, message: 'internal', chain: [] })));
  // ~124 KB of names each: 40 of them come to about 5 MB, past the bound in one call.
  const entries = Array.from({ length: 40 }, (_, n) =>
    entry(`answer-size-${n}`, ['unix:uid:307'], { dns_names: Array.from({ length: 2000 }, (_, i) => `host-${i}-of-entry-${n}.svc.example.org`.padEnd(60, 'x')) }),
  );
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  // Nothing was signed, so the issuer estimates the CA chain from the bundle, as here.
  const chain = new CaChainBytes().estimate(cache.ownBundle());
  const bytes = new Map(entries.map((e) => [e.id, expectedAnswerBytes(e, chain)]));
  const first = calls.filter((c) => c.at === calls[0]!.at);
  assert.ok(first.length >= 2, `${first.length} calls`);
  assert.deepEqual(first.flatMap((c) => c.ids).sort(), entries.slice(0, first.flatMap((c) => c.ids).length).map((e) => e.id).sort(), 'in the order asked for');
  for (const [i, c] of first.entries()) {
    const size = c.ids.reduce((sum, id) => sum + bytes.get(id)!, 0);
    assert.ok(size <= SIGN_ANSWER_BYTES, `call ${i} expects ${size} bytes, over ${SIGN_ANSWER_BYTES}`);
    const next = first[i + 1]?.ids[0];
    if (next !== undefined) assert.ok(size + bytes.get(next)! > SIGN_ANSWER_BYTES, `call ${i} had room for the next entry`);
  }
  issuer.stop();
});

test('a retry round of several failing calls grows the call backoff once, not once per call: rounds 0.75, 1.5 and 3 s apart', async () => {
  const cache = fx.cache();
  const calls: number[] = [];
  const issuer = new SvidIssuer({
    cache, clock: fx.clock, log: silentLogger(), random: half, retryBackoff: POLICY, batchSize: 1,
    sign: async () => {
      calls.push(fx.clock.now());
      throw new MeshidError('internal', 'the CA is failing');
    },
  });
  const entries = [1, 2, 3].map((i) => entry(`round-growth-${i}`, ['unix:uid:308']));
  issuer.request(cache.apply({ upserts: entries }).needSvid);
  await settle();
  // In steps of 250 ms, so that each call is made at the instant its round fell due (every wait here is a multiple).
  while (calls.length < 12) {
    fx.clock.advance(250);
    await settle();
  }
  const rounds = [...new Set(calls)];
  assert.deepEqual(rounds.map((at) => calls.filter((c) => c === at).length), rounds.map(() => 3), 'the three calls of a round go together');
  assert.deepEqual(rounds.slice(1, 4).map((at, i) => at - rounds[i]!), [750, 1500, 3000]);
  issuer.stop();
});
