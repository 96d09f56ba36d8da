import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { entryFromMessage, entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import { isMeshidError, MeshidError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import type { Selector } from '../../../src/common/spiffe/selector.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { DAY, entry, HOUR, openAgentFixture, unsignedJwt, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

/** A JWT key of the fixture's bundle, for tokens the cache must accept. */
const jwtKid = (): string => fx.bundle().jwtAuthorities[0]!.kid;
const sel = (...s: string[]): Selector[] => s.map((x) => ({ type: x.slice(0, x.indexOf(':')), value: x.slice(x.indexOf(':') + 1) }));

test('not ready until it has a bundle and was marked ready (restored or synced)', () => {
  const c = new IdentityCache({ clock: fx.clock, log: silentLogger(), signJwtSvid: async () => Promise.reject(new Error('unused')) });
  assert.equal(c.ready(), false);
  c.markReady();
  assert.equal(c.ready(), false, 'no bundle yet');
  assert.throws(() => c.snapshot(sel('unix:uid:1')), (e: unknown) => isMeshidError(e, 'unavailable'));
  c.apply({ bundle: fx.bundle() });
  assert.equal(c.ready(), true);
});

test('a snapshot holds the matching entries SVIDs, oldest entry first, and is complete only when all are issued', () => {
  const c = fx.cache();
  const older = entry('older', ['unix:uid:7'], { created_at: 100 });
  const newer = entry('newer', ['unix:uid:7'], { created_at: 200 });
  const other = entry('other', ['unix:uid:8']);
  const applied = c.apply({ upserts: [newer, older, other] });
  assert.deepEqual(applied.needSvid.map((e) => e.id).sort(), [newer.id, older.id, other.id].sort());
  let s = c.snapshot(sel('unix:uid:7', 'unix:user:x'));
  assert.equal(s.entitled, true);
  assert.equal(s.complete, false);
  assert.deepEqual(s.svids, []);
  c.putSvids([fx.issue(newer)]);
  s = c.snapshot(sel('unix:uid:7'));
  assert.deepEqual(s.svids.map((v) => v.spiffeId), [newer.spiffeId]);
  assert.equal(s.complete, false);
  assert.equal(s.defaultSvid, undefined, 'svids[0] is the newer entry: not the default');
  c.putSvids([fx.issue(older)]);
  s = c.snapshot(sel('unix:uid:7'));
  assert.deepEqual(s.svids.map((v) => v.spiffeId), [older.spiffeId, newer.spiffeId], 'svids[0] is the oldest entry');
  assert.equal(s.complete, true);
  assert.equal(s.defaultSvid, s.svids[0]);
  const newest = entry('newest', ['unix:uid:7'], { created_at: 300 });
  c.apply({ upserts: [newest] });
  s = c.snapshot(sel('unix:uid:7'));
  assert.equal(s.complete, false);
  assert.equal(s.defaultSvid?.spiffeId, older.spiffeId, 'a newer entry waiting for its SVID does not hold the default back');
  assert.equal(c.snapshot(sel('unix:uid:9')).entitled, false);
});

test('an SVID is never served past its NotAfter: the expiry timer drops it and tells its streams', () => {
  const c = fx.cache();
  const e = entry('short', ['unix:uid:20']);
  c.apply({ upserts: [e] });
  c.putSvids([fx.issue(e, HOUR)]);
  let calls = 0;
  c.subscribe(sel('unix:uid:20'), () => calls++);
  assert.equal(c.snapshot(sel('unix:uid:20')).svids.length, 1);
  fx.clock.advance(HOUR + 1000);
  assert.equal(calls, 1, 'notified at expiry');
  const s = c.snapshot(sel('unix:uid:20'));
  assert.deepEqual(s.svids, []);
  assert.equal(s.entitled, true);
  assert.equal(s.complete, false);
  assert.equal(c.svid(e.id), undefined);
});

test('SVIDs expiring together are one warning naming a few of them, not a line per entry (a long outage expires the whole cache)', () => {
  const { log, records } = capturingLogger('agent');
  const c = fx.cache(undefined, log);
  const entries = Array.from({ length: 12 }, (_, i) => entry(`batch-${i}`, ['unix:uid:21']));
  c.apply({ upserts: entries });
  c.putSvids(entries.map((e) => fx.issue(e, HOUR)));
  fx.clock.advance(HOUR + 1000);
  const warnings = records().filter((r) => r.level === LEVEL.warn);
  assert.equal(warnings.length, 1, JSON.stringify(warnings));
  assert.equal(warnings[0]!['count'], 12);
  assert.equal((warnings[0]!['spiffeIds'] as string[]).length, 5);
  assert.equal(warnings[0]!['more'], 7);
  assert.ok((warnings[0]!['spiffeIds'] as string[]).every((id) => entries.some((e) => e.spiffeId === id)));
  assert.equal(records().filter((r) => r.level === LEVEL.debug && r.msg.includes('expired')).length, 12, 'each one is named at debug');
  c.close();
});

test('snapshots are shared between callers with the same selectors until the next change, and never outlive an SVID', () => {
  const c = fx.cache();
  const e = entry('memo', ['unix:uid:30']);
  c.apply({ upserts: [e] });
  c.putSvids([fx.issue(e, HOUR)]);
  const first = c.snapshot(sel('unix:uid:30'));
  assert.equal(c.snapshot(sel('unix:uid:30')), first, 'the same state is computed once');
  // A listener that reads synchronously on notification sees the new state, not the memo.
  let seen: number | undefined;
  c.subscribe(sel('unix:uid:30'), () => (seen = c.snapshot(sel('unix:uid:30')).svids.length));
  c.putSvids([fx.issue(e, 2 * HOUR)]);
  assert.equal(seen, 1);
  const renewed = c.snapshot(sel('unix:uid:30'));
  assert.notEqual(renewed, first);
  assert.notEqual(renewed.svids[0]!.version, first.svids[0]!.version);
  // Past NotAfter the memo is not used even if no timer fired (the timer is stopped here).
  c.close();
  fx.clock.advance(2 * HOUR + 1000);
  assert.deepEqual(c.snapshot(sel('unix:uid:30')).svids, []);
});

test('a caller whose executable path spells out another workload\'s selectors never gets that workload\'s memoized state', () => {
  const c = fx.cache();
  // An identity for one binary of uid 40: the sha256 selector is what tells it apart from the user's other programs.
  const app = entry('app', ['unix:uid:40', 'unix:sha256:aa11']);
  c.apply({ upserts: [app] });
  c.putSvids([fx.issue(app)]);
  const victim = sel('unix:uid:40', 'unix:path:/usr/bin/app', 'unix:sha256:aa11');
  assert.equal(c.snapshot(victim).svids.length, 1);
  // Same uid, another binary (too large to hash, so no sha256 selector of its own) whose path holds a newline.
  const crafted = sel('unix:uid:40', 'unix:path:/usr/bin/app\nunix:sha256:aa11');
  const s = c.snapshot(crafted);
  assert.equal(s.entitled, false);
  assert.deepEqual(s.svids, []);
});

test('a new SPIFFE ID drops the old SVID at once; a DNS-name change keeps serving it until the new one comes', () => {
  const c = fx.cache();
  const e = entry('renamed', ['unix:uid:30']);
  c.apply({ upserts: [e] });
  c.putSvids([fx.issue(e)]);
  const dns = entryFromMessage({ ...entryToMessage(e), dns_names: ['a.example'], revision: e.revision + 1 });
  assert.deepEqual(c.apply({ upserts: [dns] }).needSvid.map((x) => x.id), [e.id]);
  assert.equal(c.snapshot(sel('unix:uid:30')).svids.length, 1);
  const hint = entryFromMessage({ ...entryToMessage(dns), hint: 'internal', revision: e.revision + 2 });
  assert.deepEqual(c.apply({ upserts: [hint] }).needSvid, [], 'a hint change needs no new certificate');
  assert.equal(c.snapshot(sel('unix:uid:30')).svids[0]!.hint, 'internal', 'the served SVID carries the new hint');
  const renamed = entryFromMessage({ ...entryToMessage(hint), spiffe_id: 'spiffe://example.org/new-name', revision: e.revision + 3 });
  assert.deepEqual(c.apply({ upserts: [renamed] }).needSvid.map((x) => x.id), [e.id]);
  assert.deepEqual(c.snapshot(sel('unix:uid:30')).svids, []);
  // An SVID signed for the old name that arrives late is not published.
  c.putSvids([fx.issue(e)]);
  assert.deepEqual(c.snapshot(sel('unix:uid:30')).svids, []);
});

test('entry changes notify only the streams they concern; bundle changes notify every stream', () => {
  const c = fx.cache();
  let a = 0;
  let b = 0;
  c.subscribe(sel('unix:uid:40'), () => a++);
  const unsubscribe = c.subscribe(sel('unix:uid:41'), () => b++);
  const e = entry('forty', ['unix:uid:40']);
  c.apply({ upserts: [e] });
  assert.deepEqual([a, b], [1, 0]);
  c.apply({ removed: [e.id] });
  assert.deepEqual([a, b], [2, 0]);
  c.apply({ bundle: { ...fx.bundle(), sequence: fx.bundle().sequence + 1 } });
  assert.deepEqual([a, b], [3, 1]);
  unsubscribe();
  c.apply({ bundle: fx.bundle() });
  assert.deepEqual([a, b], [4, 1]);
});

test('a change only the next certificate carries (DNS names, TTL) notifies nobody but is persisted and re-signed', () => {
  const c = fx.cache();
  const e = entry('dns', ['unix:uid:42'], { created_at: 5 });
  c.apply({ upserts: [e] });
  c.putSvids([fx.issue(e)]);
  let notified = 0;
  let persisted = 0;
  c.subscribe(sel('unix:uid:42'), () => notified++);
  c.onChange(() => persisted++);
  const before = c.snapshot(sel('unix:uid:42'));
  const renamed = { ...e, dnsNames: ['dns.example'], x509SvidTtlSeconds: 3600, revision: e.revision + 1 };
  const applied = c.apply({ upserts: [renamed] });
  assert.deepEqual(applied.needSvid.map((x) => x.id), [e.id], 'the entry still gets a new SVID');
  assert.equal(notified, 0);
  assert.equal(persisted, 1);
  assert.equal(c.snapshot(sel('unix:uid:42')), before, 'what workloads see is unchanged');
  c.apply({ upserts: [{ ...renamed, hint: 'frontend' }] });
  assert.equal(notified, 1, 'a hint is part of what workloads see');
  c.apply({ upserts: [{ ...renamed, hint: 'frontend', selectors: [...renamed.selectors, { type: 'unix', value: 'gid:7' }] }] });
  assert.equal(notified, 2, 'so are the selectors');
});

test('a change of the trust domains an entry federates with, or of its place in the default order, reaches its streams and is a withdrawal', () => {
  const c = fx.cache();
  const e = entry('fed-change', ['unix:uid:43'], { created_at: 5, federates_with: ['alpha.org'] });
  c.apply({ upserts: [e] });
  c.putSvids([fx.issue(e)]);
  let notified = 0;
  c.subscribe(sel('unix:uid:43'), () => notified++);
  const federated = c.apply({ upserts: [{ ...e, federatesWith: ['alpha.org', 'zeta.org'], revision: e.revision + 1 }] });
  assert.equal(notified, 1, 'the bundles the workload gets changed');
  assert.equal(federated.withdraws, true, 'a federation taken away must be saved before it is served');
  assert.deepEqual(federated.withdrawnEntryIds, [e.id]);
  const reordered = c.apply({ upserts: [{ ...e, federatesWith: ['alpha.org', 'zeta.org'], createdAt: 1, revision: e.revision + 2 }] });
  assert.equal(notified, 2, 'which identity is the default may have changed');
  assert.equal(reordered.withdraws, true);
});

test('federated bundles in a snapshot are those the matching entries federate with, sorted, never the own domain', () => {
  const c = fx.cache();
  const own = fx.bundle();
  const foreign = (td: string) => ({ ...own, trustDomain: td });
  // A bundle under the own trust domain's name among the federated ones (a server fault) is still not served as one.
  c.apply({ federatedBundles: [foreign('zeta.org'), foreign('alpha.org'), foreign('unused.org'), foreign('example.org')] });
  c.apply({ upserts: [entry('fed', ['unix:uid:50'], { federates_with: ['zeta.org', 'alpha.org', 'missing.org', 'example.org'] })] });
  assert.deepEqual(c.snapshot(sel('unix:uid:50')).federatedBundles.map((b) => b.trustDomain), ['alpha.org', 'zeta.org']);
});

test('JWT-SVIDs: one per matching entry (or the one asked for), and permission_denied when nothing matches', async () => {
  const token = (entryId: string, audience: readonly string[]): string => unsignedJwt({ sub: c.entry(entryId)!.spiffeId, aud: audience, jti: entryId }, jwtKid());
  const c = fx.cache(async (entryId, audience) => ({ token: token(entryId, audience), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 }));
  const first = entry('jwt-a', ['unix:uid:60'], { created_at: 1 });
  const second = entry('jwt-b', ['unix:uid:60'], { created_at: 2, hint: 'b' });
  c.apply({ upserts: [second, first] });
  const all = await c.fetchJwtSvids(sel('unix:uid:60'), ['db']);
  assert.deepEqual(all.map((r) => [r.spiffeId, r.token, r.hint]), [
    [first.spiffeId, token(first.id, ['db']), ''],
    [second.spiffeId, token(second.id, ['db']), 'b'],
  ]);
  assert.equal(all[0]!.expiresAt, fx.clock.now() + 300_000);
  const one = await c.fetchJwtSvids(sel('unix:uid:60'), ['db'], second.spiffeId);
  assert.deepEqual(one.map((r) => r.spiffeId), [second.spiffeId]);
  await assert.rejects(c.fetchJwtSvids(sel('unix:uid:61'), ['db']), (e: unknown) => isMeshidError(e, 'permission_denied'));
  await assert.rejects(c.fetchJwtSvids(sel('unix:uid:60'), ['db'], 'spiffe://example.org/not-mine'), (e: unknown) => isMeshidError(e, 'permission_denied'));
});

test('JWT-SVIDs are all or nothing: one that cannot be signed fails the call, so svids[0] is never another identity', async () => {
  let refuse: (entryId: string) => Error | undefined = () => undefined;
  const c = fx.cache(async (entryId) => {
    const err = refuse(entryId);
    if (err !== undefined) throw err;
    return { token: unsignedJwt({ sub: c.entry(entryId)!.spiffeId }, jwtKid()), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 };
  });
  const dflt = entry('jwt-default', ['unix:uid:62'], { created_at: 1 });
  const other = entry('jwt-other', ['unix:uid:62'], { created_at: 2 });
  c.apply({ upserts: [dflt, other] });
  refuse = (id) => (id === dflt.id ? new MeshidError('unavailable', 'the server is unreachable') : undefined);
  await assert.rejects(c.fetchJwtSvids(sel('unix:uid:62'), ['db']), (e: unknown) => isMeshidError(e, 'unavailable'));
  // Asked for by name, the identity that can be signed is served.
  assert.deepEqual((await c.fetchJwtSvids(sel('unix:uid:62'), ['db'], other.spiffeId)).map((r) => r.spiffeId), [other.spiffeId]);
  // The server refusing the agent is the agent's trouble, not the workload's: UNAVAILABLE, never PERMISSION_DENIED.
  refuse = () => new MeshidError('permission_denied', 'agent is banned');
  await assert.rejects(c.fetchJwtSvids(sel('unix:uid:62'), ['api']), (e: unknown) => isMeshidError(e, 'unavailable') && /jwt-default|agent is banned/.test((e as Error).message));
  // A request the server finds malformed stays the caller's mistake.
  refuse = () => new MeshidError('invalid_argument', 'audience is too long');
  await assert.rejects(c.fetchJwtSvids(sel('unix:uid:62'), ['x']), (e: unknown) => isMeshidError(e, 'invalid_argument'));
});

test('the oldest SVID expiry is the earliest NotAfter held', () => {
  const c = fx.cache();
  const e1 = entry('exp1', ['unix:uid:70']);
  const e2 = entry('exp2', ['unix:uid:70']);
  c.apply({ upserts: [e1, e2] });
  const long = fx.issue(e1, DAY);
  const short = fx.issue(e2, 2 * HOUR);
  c.putSvids([long, short]);
  assert.equal(c.oldestSvidExpiry(), short.notAfter);
});

test('a JWT-SVID is never handed to a caller its entry stopped matching while the token was signed, nor with another sub', async () => {
  let release!: (v: { token: string; issuedAt: number; expiresAt: number }) => void;
  const signed = { n: 0 };
  const c = fx.cache(() => {
    signed.n++;
    return new Promise((resolve) => (release = resolve));
  });
  const e = entry('jwt-moving', ['unix:uid:79']);
  c.apply({ upserts: [e] });
  const pending = c.fetchJwtSvids(sel('unix:uid:79'), ['aud']);
  await new Promise((r) => setImmediate(r));
  // The operator moves the entry to another SPIFFE ID and other selectors; the Sync update arrives mid-call, and the
  // server signs for the entry as it is now.
  const moved = entryFromMessage({ ...entryToMessage(e), spiffe_id: 'spiffe://example.org/other-service', selectors: [{ type: 'unix', value: 'uid:80' }], revision: e.revision + 1 });
  c.apply({ upserts: [moved] });
  release({ token: unsignedJwt({ sub: moved.spiffeId }, jwtKid()), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 });
  // Started over with the new state, in which uid 79 matches nothing.
  await assert.rejects(pending, (err: unknown) => isMeshidError(err, 'permission_denied'));

  // An agent whose view lags the server's (the Sync stream reconnecting): the server's token names the new ID.
  const lagging = fx.cache(async () => ({ token: unsignedJwt({ sub: 'spiffe://example.org/renamed' }, jwtKid()), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 }));
  lagging.apply({ upserts: [entry('jwt-lagging', ['unix:uid:81'])] });
  await assert.rejects(
    lagging.fetchJwtSvids(sel('unix:uid:81'), ['aud']),
    (err: unknown) => isMeshidError(err, 'unavailable') && /signed a JWT-SVID for spiffe:\/\/example\.org\/renamed, not spiffe:\/\/example\.org\/jwt-lagging/.test((err as Error).message),
  );
  assert.equal(signed.n, 1, 'the moved entry was not signed again for a caller it no longer matches');
});

test('a JWT-SVID whose entry is deleted while it is signed is never handed out (the sub check cannot name the entry then)', async () => {
  const gates: Array<() => void> = [];
  const signedFor: string[] = [];
  const c = fx.cache(async (entryId) => {
    // The server signs for the entry as it was when the call arrived: before the deletion.
    const sub = c.entry(entryId)!.spiffeId;
    signedFor.push(sub);
    await new Promise<void>((resolve) => gates.push(resolve));
    return { token: unsignedJwt({ sub }, jwtKid()), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 };
  });
  const doomed = entry('jwt-deleted', ['unix:uid:84']);
  const kept = entry('jwt-kept', ['unix:uid:84']);
  const alone = entry('jwt-deleted-alone', ['unix:uid:85']);
  c.apply({ upserts: [doomed, kept, alone] });
  const both = c.fetchJwtSvids(sel('unix:uid:84'), ['aud']);
  const single = assert.rejects(c.fetchJwtSvids(sel('unix:uid:85'), ['aud']), (err: unknown) => isMeshidError(err, 'permission_denied'));
  await new Promise((r) => setImmediate(r));
  assert.equal(gates.length, 3);
  // The operator deletes the entries; the Sync update arrives while their tokens are out.
  c.apply({ removed: [doomed.id, alone.id] });
  for (;;) {
    const open = gates.splice(0);
    if (open.length === 0) break;
    for (const g of open) g();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual((await both).map((r) => r.spiffeId), [kept.spiffeId], 'started over without the deleted entry');
  await single;
  // Nor kept for a later call: the caller's next fetch gets the kept entry's cached token and nothing else.
  const again = await c.fetchJwtSvids(sel('unix:uid:84'), ['aud']);
  assert.deepEqual(again.map((r) => r.spiffeId), [kept.spiffeId]);
  assert.ok(!signedFor.slice(3).includes(doomed.spiffeId), 'the deleted entry is not signed again');
});

test('a JWT-SVID request that starts after its entry changed does not join the signing call made before the change', async () => {
  const gates: Array<() => void> = [];
  let calls = 0;
  const c = fx.cache(async (entryId) => {
    const sub = c.entry(entryId)!.spiffeId; // the server signs for the entry as it is when the call arrives
    if (calls++ === 0) await new Promise<void>((resolve) => gates.push(resolve));
    return { token: unsignedJwt({ sub }, jwtKid()), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 };
  });
  const e = entry('jwt-renamed', ['unix:uid:82']);
  c.apply({ upserts: [e] });
  const before = c.fetchJwtSvids(sel('unix:uid:82'), ['aud']);
  await new Promise((r) => setImmediate(r));
  const renamed = entryFromMessage({ ...entryToMessage(e), spiffe_id: 'spiffe://example.org/jwt-renamed-2', revision: e.revision + 1 });
  c.apply({ upserts: [renamed] });
  const after = c.fetchJwtSvids(sel('unix:uid:82'), ['aud']);
  gates[0]!();
  assert.deepEqual((await after).map((r) => r.spiffeId), [renamed.spiffeId]);
  assert.deepEqual((await before).map((r) => r.spiffeId), [renamed.spiffeId], 'the earlier call started over with the new state');
});

test('a JWT key that leaves the bundle (tainted) takes its cached tokens with it, also from the outage fallback', async () => {
  const own = fx.bundle();
  let signingKid = jwtKid();
  let calls = 0;
  const c = fx.cache(async (entryId) => {
    calls++;
    return { token: unsignedJwt({ sub: c.entry(entryId)!.spiffeId, n: calls }, signingKid), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 };
  });
  const e = entry('jwt-tainted-key', ['unix:uid:83']);
  c.apply({ upserts: [e] });
  const first = (await c.fetchJwtSvids(sel('unix:uid:83'), ['aud']))[0]!.token;
  assert.equal((await c.fetchJwtSvids(sel('unix:uid:83'), ['aud']))[0]!.token, first, 'cached while fresh');

  // The server tainted the key: the bundle now holds only its replacement.
  c.apply({ bundle: { ...own, jwtAuthorities: [{ kid: 'jwt-replacement', publicKey: own.jwtAuthorities[0]!.publicKey }], sequence: own.sequence + 1 } });
  // A server that still signs with the old key (or whose answer crossed the bundle update) is refused, and the cached
  // token is not the fallback: no validator holding this bundle would accept it.
  await assert.rejects(
    c.fetchJwtSvids(sel('unix:uid:83'), ['aud']),
    (err: unknown) => isMeshidError(err, 'unavailable') && /with key .* which this agent's trust bundle does not hold yet/.test((err as Error).message),
  );
  signingKid = 'jwt-replacement';
  const next = (await c.fetchJwtSvids(sel('unix:uid:83'), ['aud']))[0]!.token;
  assert.notEqual(next, first);
  assert.equal(JSON.parse(Buffer.from(next.split('.')[0]!, 'base64url').toString()).kid, 'jwt-replacement');
  assert.equal(calls, 3);
});

test('an SVID that could not be signed is not waited for: the snapshot is complete with the others, the default first', () => {
  const c = fx.cache();
  const older = entry('cached-default', ['unix:uid:90'], { created_at: 100 });
  const newer = entry('not-signed', ['unix:uid:90'], { created_at: 200 });
  c.apply({ upserts: [older, newer] });
  c.putSvids([fx.issue(older)]);
  let notified = 0;
  const unsubscribe = c.subscribe(sel('unix:uid:90'), () => notified++);
  assert.equal(c.snapshot(sel('unix:uid:90')).complete, false, 'waiting for the newer one while it is being signed');
  // The server is unreachable: the issuer retries it, and says so.
  c.markUnsigned([newer.id]);
  assert.equal(notified, 1, 'a waiting stream looks again');
  let s = c.snapshot(sel('unix:uid:90'));
  assert.equal(s.complete, true);
  assert.deepEqual(s.svids.map((v) => v.spiffeId), [older.spiffeId]);
  assert.equal(s.defaultSvid?.spiffeId, older.spiffeId);
  // Still the caller's own name, missing for now: SDS FetchSecrets answers UNAVAILABLE for it, not NOT_FOUND.
  assert.deepEqual([...s.withoutSvid], [newer.spiffeId]);
  c.putSvids([fx.issue(newer)]);
  s = c.snapshot(sel('unix:uid:90'));
  assert.deepEqual(s.svids.map((v) => v.spiffeId), [older.spiffeId, newer.spiffeId]);
  assert.deepEqual([...s.withoutSvid], []);
  unsubscribe();

  // When the one not signed is the default, the snapshot has no default: nothing may be served as svids[0].
  const d = fx.cache();
  const oldest = entry('default-not-signed', ['unix:uid:91'], { created_at: 100 });
  const sibling = entry('sibling-cached', ['unix:uid:91'], { created_at: 200 });
  d.apply({ upserts: [oldest, sibling] });
  d.putSvids([fx.issue(sibling)]);
  assert.equal(d.snapshot(sel('unix:uid:91')).defaultSigning, true, 'the default is waited for while it is being signed');
  d.markUnsigned([oldest.id]);
  assert.equal(d.snapshot(sel('unix:uid:91')).defaultSigning, false, 'an SDS wait for the default name is not held for one not being signed');
  s = d.snapshot(sel('unix:uid:91'));
  assert.equal(s.complete, true);
  assert.equal(s.defaultSvid, undefined);
});

test('a cached JWT-SVID served because its refresh failed is logged on the agent log, naming the SPIFFE ID', async () => {
  const { log, records, text } = capturingLogger('agent');
  let down = false;
  const c = fx.cache(async (entryId) => {
    if (down) throw new MeshidError('unavailable', 'meshid-server unreachable');
    return { token: unsignedJwt({ sub: c.entry(entryId)!.spiffeId }, jwtKid()), issuedAt: fx.clock.now(), expiresAt: fx.clock.now() + 300_000 };
  }, log);
  const e = entry('jwt-fallback-logged', ['unix:uid:84']);
  c.apply({ upserts: [e] });
  const first = (await c.fetchJwtSvids(sel('unix:uid:84'), ['aud']))[0]!.token;
  fx.clock.advance(150_000);
  down = true;
  assert.equal((await c.fetchJwtSvids(sel('unix:uid:84'), ['aud']))[0]!.token, first);
  const warned = records().filter((r) => r.level === LEVEL.warn && r['entryId'] === e.id);
  assert.equal(warned.length, 1);
  assert.equal(warned[0]!['spiffeId'], e.spiffeId);
  assert.equal(warned[0]!['reason'], 'meshid-server unreachable');
  assert.ok(!text().includes(first));
});

test('every change is reported with the IDs of the entries it changed (persistence saves only those): upserts, SVIDs, removals, expiries; a bundle alone names none', () => {
  const c = fx.cache();
  const heard: string[][] = [];
  c.onChange((ids) => heard.push([...ids].sort()));
  const [a, b] = [entry('chg-a', ['unix:uid:61']), entry('chg-b', ['unix:uid:62'])];
  c.apply({ upserts: [a, b] });
  c.putSvids([fx.issue(a, HOUR)]);
  c.putSvids([fx.issue(b, DAY)]);
  c.apply({ removed: [b.id] });
  fx.clock.advance(HOUR + 1000);
  c.apply({ bundle: fx.bundle() });
  assert.deepEqual(heard, [[a.id, b.id].sort(), [a.id], [b.id], [b.id], [a.id], []]);
});

test('an entry signed after a failed signing is waited for again when its SVID expires while its renewal is under way', () => {
  const c = fx.cache();
  const e = entry('unsigned-then-signed', ['unix:uid:92']);
  c.apply({ upserts: [e] });
  c.markUnsigned([e.id]);
  assert.equal(c.snapshot(sel('unix:uid:92')).complete, true, 'not waited for while its signing fails');
  c.putSvids([fx.issue(e, HOUR)]);
  fx.clock.advance(HOUR + 1000);
  const s = c.snapshot(sel('unix:uid:92'));
  assert.deepEqual(s.svids, []);
  assert.equal(s.complete, false, 'the SVID that came cleared the failure: its renewal is waited for');
  assert.deepEqual([...s.signing], [e.spiffeId]);
});

test('an entry whose signing failed is waited for again, and asked to be signed, once it changes (DNS names, or selectors while it has no SVID)', () => {
  const c = fx.cache();
  const e = entry('unsigned-then-changed', ['unix:uid:94']);
  c.apply({ upserts: [e] });
  c.markUnsigned([e.id]);
  assert.equal(c.snapshot(sel('unix:uid:94')).complete, true, 'not waited for while its signing fails');
  // Who gets it changes, not its certificate: it still has no SVID, so it is to be signed (at once, not at the
  // failed signing's retry time), and waited for as a new entry is.
  const widened = entryFromMessage({ ...entryToMessage(e), selectors: [{ type: 'unix', value: 'uid:94' }, { type: 'unix', value: 'gid:94' }], revision: e.revision + 1 });
  assert.deepEqual(c.apply({ upserts: [widened] }).needSvid.map((n) => n.id), [e.id]);
  assert.equal(c.snapshot(sel('unix:uid:94', 'unix:gid:94')).complete, false, 'waited for again');
  c.markUnsigned([e.id]);
  const renamed = entryFromMessage({ ...entryToMessage(widened), dns_names: ['unsigned-then-changed.example.org'], revision: e.revision + 2 });
  assert.deepEqual(c.apply({ upserts: [renamed] }).needSvid.map((n) => n.id), [e.id]);
  const s = c.snapshot(sel('unix:uid:94', 'unix:gid:94'));
  assert.equal(s.complete, false, 'a new certificate is waited for again, until its signing fails too');
  assert.deepEqual([...s.signing], [e.spiffeId]);
});

test('removing an entry is a withdrawal, to be saved before any workload is told', () => {
  const c = fx.cache();
  const e = entry('removed-withdraws', ['unix:uid:93']);
  c.apply({ upserts: [e] });
  const applied = c.apply({ removed: [e.id] });
  assert.equal(applied.withdraws, true);
  assert.deepEqual(applied.withdrawnEntryIds, [e.id]);
});

test('a new set of federated bundles (a federation ended, a partner root dropped) is a withdrawal, saved before streams are told; an update of entries alone that changes no view is not', () => {
  const c = fx.cache();
  const e = entry('fed-bundles-withdraw', ['unix:uid:44'], { federates_with: ['partner.org'] });
  c.apply({ upserts: [e] });
  const partner = { ...fx.bundle(), trustDomain: 'partner.org', jwtAuthorities: [] };
  assert.equal(c.apply({ federatedBundles: [partner] }).withdraws, true, 'bundles replaced');
  assert.equal(c.apply({ federatedBundles: [] }).withdraws, true, 'the federation ended: saved before workloads hear of it, or a restart would trust it again');
  assert.equal(c.apply({ upserts: [{ ...e, dnsNames: ['x.example'], revision: e.revision + 1 }] }).withdraws, false);
});
