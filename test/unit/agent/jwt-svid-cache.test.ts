import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JWT_CACHE_CHARS_PER_TOKEN, JwtSvidCache, REFRESH_WAIT_WITH_VALID_TOKEN_MS, type SignedJwtSvid } from '../../../src/agent/cache/jwt-svid-cache.js';
import { internal, notFound, permissionDenied, resourceExhausted, unavailable } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';

const TTL = 300_000;

function setup(maxSize = 10) {
  const clock = new FakeClock();
  const calls: Array<{ entryId: string; audience: readonly string[] }> = [];
  let fail: Error | undefined;
  let n = 0;
  const sign = async (entryId: string, audience: readonly string[]): Promise<SignedJwtSvid> => {
    calls.push({ entryId, audience });
    if (fail) throw fail;
    const iat = clock.now();
    return { token: `t${++n}`, issuedAt: iat, expiresAt: iat + TTL };
  };
  const cache = new JwtSvidCache(sign, clock, maxSize);
  return { clock, calls, cache, setFail: (e: Error | undefined) => (fail = e) };
}

test('a token is reused until half its lifetime has passed, then re-minted', async () => {
  const { clock, calls, cache } = setup();
  const a = await cache.fetch('e1', ['db', 'api']);
  clock.advance(TTL / 2 - 1);
  assert.equal((await cache.fetch('e1', ['db', 'api'])).token, a.token);
  clock.advance(1);
  assert.notEqual((await cache.fetch('e1', ['db', 'api'])).token, a.token);
  assert.equal(calls.length, 2);
});

test('audiences are signed in the order asked, duplicates kept; another order or multiplicity is another token', async () => {
  const { calls, cache } = setup();
  const ba = await cache.fetch('e1', ['b', 'a']);
  const ab = await cache.fetch('e1', ['a', 'b']);
  const aab = await cache.fetch('e1', ['a', 'a', 'b']);
  assert.equal(new Set([ba.token, ab.token, aab.token]).size, 3, 'three keys, three tokens');
  assert.deepEqual(
    calls.map((c) => c.audience),
    [['b', 'a'], ['a', 'b'], ['a', 'a', 'b']],
  );
  assert.equal((await cache.fetch('e1', ['b', 'a'])).token, ba.token, 'each order still hits its own token');
  assert.equal((await cache.fetch('e1', ['a', 'b'])).token, ab.token);
  assert.equal(calls.length, 3);
});

test('the audience list handed to the signer is a copy: a caller changing its array later changes nothing', async () => {
  const { calls, cache } = setup();
  const audience = ['b', 'a'];
  const pending = cache.fetch('e1', audience);
  audience.reverse();
  await pending;
  assert.deepEqual(calls[0]!.audience, ['b', 'a']);
});

test('freshness is measured on the agent clock from arrival, so a server clock far behind does not defeat the cache', async () => {
  const clock = new FakeClock();
  let n = 0;
  // The server's clock is two hours behind: its iat/exp are in the agent's past.
  const cache = new JwtSvidCache(async () => ({ token: `t${++n}`, issuedAt: clock.now() - 7_200_000, expiresAt: clock.now() - 7_200_000 + TTL }), clock);
  const a = await cache.fetch('e', ['x']);
  assert.equal((await cache.fetch('e', ['x'])).token, a.token);
});

test('different entries and audience sets are cached apart; concurrent requests share one signing call', async () => {
  const { calls, cache } = setup();
  const [x, y] = await Promise.all([cache.fetch('e1', ['a']), cache.fetch('e1', ['a'])]);
  assert.equal(x.token, y.token);
  assert.equal(calls.length, 1);
  await cache.fetch('e1', ['b']);
  await cache.fetch('e2', ['a']);
  assert.equal(calls.length, 3);
});

test('when the server is unavailable a cached token that has not expired is still served; an expired one is not', async () => {
  const { clock, cache, setFail } = setup();
  const a = await cache.fetch('e1', ['a']);
  clock.advance(TTL * 0.75);
  setFail(unavailable('server down'));
  assert.equal((await cache.fetch('e1', ['a'])).token, a.token);
  clock.advance(TTL * 0.25);
  await assert.rejects(cache.fetch('e1', ['a']), /server down/);
});

test('when the server\'s signing budget is spent (RESOURCE_EXHAUSTED with a retry hint) a cached token that has not expired is still served', async () => {
  const { clock, cache, setFail } = setup();
  const a = await cache.fetch('e1', ['a']);
  clock.advance(TTL * 0.75);
  setFail(resourceExhausted('signing rate limit reached; retry in 3 s'));
  assert.equal((await cache.fetch('e1', ['a'])).token, a.token);
  // Without the hint it is not a budget refusal (a full datastore disk, say): with no token to fall back on it is
  // passed on at once, not waited out, once the refusal's wait (3 s and up to 1 s of jitter), in which nothing is
  // asked of the server, is over.
  clock.advance(4000);
  setFail(resourceExhausted('the datastore disk is full'));
  assert.equal((await cache.fetch('e1', ['a'])).token, a.token, 'a fault of the server\'s says nothing against the token held');
  clock.advance(TTL);
  await assert.rejects(cache.fetch('e1', ['a']), /disk is full/);
});

test('when the server fails signing with INTERNAL (or any fault of its own) a cached token that has not expired is still served, as SPIRE does', async () => {
  const { clock, calls, cache, setFail } = setup();
  const a = await cache.fetch('e1', ['a']);
  clock.advance(TTL * 0.75);
  setFail(internal('signing failed'));
  assert.equal((await cache.fetch('e1', ['a'])).token, a.token);
  setFail(new Error('a bug of the agent\'s own'));
  assert.equal((await cache.fetch('e1', ['a'])).token, a.token);
  assert.equal(calls.length, 3, 'each call still asked the server for a fresh token');
  clock.advance(TTL * 0.25);
  setFail(internal('signing failed'));
  await assert.rejects(cache.fetch('e1', ['a']), /signing failed/, 'an expired token is never served');
});

test('a server that hangs holds a caller with a valid cached token one second, not its deadline; the refresh is stored when it comes', async () => {
  const clock = new FakeClock();
  let n = 0;
  let hung: ((jwt: SignedJwtSvid) => void) | undefined;
  const sign = (): Promise<SignedJwtSvid> => {
    const iat = clock.now();
    const jwt = { token: `t${++n}`, issuedAt: iat, expiresAt: iat + TTL };
    if (n === 1) return Promise.resolve(jwt);
    return new Promise((resolve) => (hung = () => resolve(jwt)));
  };
  const cache = new JwtSvidCache(sign, clock);
  const a = await cache.fetch('e1', ['a']);
  clock.advance(TTL * 0.6);
  let answered = false;
  const pending = cache.fetch('e1', ['a'], clock.now() + 30_000).finally(() => (answered = true));
  await new Promise((r) => setImmediate(r));
  clock.advance(REFRESH_WAIT_WITH_VALID_TOKEN_MS - 1);
  await new Promise((r) => setImmediate(r));
  assert.equal(answered, false, 'still waiting for the refresh');
  clock.advance(1);
  assert.equal((await pending).token, a.token, 'the cached token, one second after the refresh went out');
  hung!({ token: 'unused', issuedAt: 0, expiresAt: 0 });
  await new Promise((r) => setImmediate(r));
  assert.equal((await cache.fetch('e1', ['a'])).token, 't2', 'the late refresh is stored and served');
  // With no valid token to fall back on, a caller waits for the signing up to its deadline.
  clock.advance(TTL);
  const late = cache.fetch('e1', ['a'], clock.now() + 30_000);
  let settled = false;
  void late.then(() => (settled = true), () => (settled = true));
  clock.advance(REFRESH_WAIT_WITH_VALID_TOKEN_MS * 5);
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  hung!({ token: 'unused', issuedAt: 0, expiresAt: 0 });
  assert.equal((await late).token, 't3');
});

test('a cached token that expires during the short wait for its refresh: the caller goes on waiting up to its own deadline, not failed as past it', async () => {
  const clock = new FakeClock();
  let n = 0;
  let answer: (() => void) | undefined;
  const sign = (): Promise<SignedJwtSvid> => {
    const iat = clock.now();
    const jwt = { token: `t${++n}`, issuedAt: iat, expiresAt: iat + TTL };
    if (n === 1) return Promise.resolve(jwt);
    return new Promise((resolve) => (answer = () => resolve(jwt)));
  };
  const cache = new JwtSvidCache(sign, clock);
  await cache.fetch('e1', ['a']);
  // Half a second of the cached token's life left: less than the short wait.
  clock.advance(TTL - REFRESH_WAIT_WITH_VALID_TOKEN_MS / 2);
  let outcome: string | undefined;
  const pending = cache.fetch('e1', ['a'], clock.now() + 30_000).then(
    (jwt) => (outcome = jwt.token),
    (err: Error) => (outcome = `refused: ${err.message}`),
  );
  await new Promise((r) => setImmediate(r));
  clock.advance(REFRESH_WAIT_WITH_VALID_TOKEN_MS);
  await new Promise((r) => setImmediate(r));
  assert.equal(outcome, undefined, 'the cached token is gone, the deadline 29 s away: still waiting for the refresh');
  answer!();
  await pending;
  assert.equal(outcome, 't2');
});

test('a refusal from the server is passed on even when a cached token exists', async () => {
  const { clock, cache, setFail } = setup();
  await cache.fetch('e1', ['a']);
  clock.advance(TTL * 0.6);
  setFail(permissionDenied('entry not authorized'));
  await assert.rejects(cache.fetch('e1', ['a']), /not authorized/);
});

for (const [name, refusal] of [
  ['PERMISSION_DENIED', permissionDenied('entry e1 is not authorized for this agent')],
  ['NOT_FOUND', notFound('entry e1 not found')],
] as const) {
  test(`a ${name} refusal forgets the cached token: an outage after it does not serve it either`, async () => {
    const { clock, cache, setFail } = setup();
    await cache.fetch('e1', ['a']);
    clock.advance(TTL * 0.6);
    setFail(refusal);
    await assert.rejects(cache.fetch('e1', ['a']), refusal);
    assert.equal(cache.size, 0);
    setFail(unavailable('server down'));
    await assert.rejects(cache.fetch('e1', ['a']), /server down/);
  });
}

test('a refusal that arrives after the caller stopped waiting (the short wait over) still forgets the cached token', async () => {
  const clock = new FakeClock();
  let n = 0;
  let refuse: (() => void) | undefined;
  let down = false;
  const sign = (): Promise<SignedJwtSvid> => {
    if (down) return Promise.reject(unavailable('server down'));
    const iat = clock.now();
    if (++n === 1) return Promise.resolve({ token: 't1', issuedAt: iat, expiresAt: iat + TTL });
    return new Promise((_, reject) => (refuse = () => reject(permissionDenied('entry e1 is not authorized for this agent'))));
  };
  const cache = new JwtSvidCache(sign, clock);
  const a = await cache.fetch('e1', ['a']);
  clock.advance(TTL * 0.6);
  const pending = cache.fetch('e1', ['a'], clock.now() + 30_000);
  await new Promise((r) => setImmediate(r));
  clock.advance(REFRESH_WAIT_WITH_VALID_TOKEN_MS);
  assert.equal((await pending).token, a.token, 'a slow server: the cached token after the short wait');
  refuse!();
  await new Promise((r) => setImmediate(r));
  assert.equal(cache.size, 0, 'the late refusal drops the token');
  down = true;
  await assert.rejects(cache.fetch('e1', ['a'], clock.now() + 30_000), /server down/, 'an outage after the refusal does not serve the withdrawn token');
});

test('the cache is bounded: the least recently used token goes first', async () => {
  const { calls, cache } = setup(2);
  await cache.fetch('e1', ['a']);
  await cache.fetch('e2', ['a']);
  await cache.fetch('e1', ['a']); // e1 is now the most recent
  await cache.fetch('e3', ['a']); // evicts e2
  assert.equal(cache.size, 2);
  const before = calls.length;
  await cache.fetch('e1', ['a']);
  assert.equal(calls.length, before, 'e1 still cached');
  await cache.fetch('e2', ['a']);
  assert.equal(calls.length, before + 1, 'e2 was evicted');
});

/** A signer whose tokens carry their audiences in base64, as real JWT-SVIDs do. */
function audienceCarryingCache(maxSize: number) {
  const clock = new FakeClock();
  let n = 0;
  const sign = async (_entryId: string, audience: readonly string[]): Promise<SignedJwtSvid> => ({
    token: `h.${Buffer.from(JSON.stringify({ aud: audience, n: ++n })).toString('base64url')}.sig`,
    issuedAt: clock.now(),
    expiresAt: clock.now() + TTL,
  });
  return new JwtSvidCache(sign, clock, maxSize);
}

test('the cache is bounded in characters too: one workload\'s lists of 64 audiences of 1 KB cannot fill it', async () => {
  const cache = audienceCarryingCache(100);
  const bound = 100 * JWT_CACHE_CHARS_PER_TOKEN;
  for (let i = 0; i < 50; i++) await cache.fetch('e1', Array.from({ length: 64 }, (_, j) => `${i}-${j}-${'x'.repeat(1000)}`));
  // Each token and its key hold ~150,000 characters: 50 of them were 7.5 M characters, here at most 800 K.
  assert.ok(cache.size <= Math.floor(bound / 150_000), `${cache.size} large tokens kept`);
  assert.ok(cache.chars <= bound, `${cache.chars} characters cached, over ${bound}`);
  assert.ok(cache.size > 0, 'the most recent still are');
  // Ordinary tokens still fill the cache up to its size.
  for (let i = 0; i < 100; i++) await cache.fetch(`e${i}`, ['api']);
  assert.equal(cache.size, 100);
});

test('a token larger than the whole character bound is handed out but evicts nothing', async () => {
  const cache = audienceCarryingCache(1);
  const small = await cache.fetch('e1', ['api']);
  const large = await cache.fetch('e1', Array.from({ length: 64 }, (_, j) => `${j}-${'x'.repeat(1000)}`));
  assert.match(large.token, /^h\./);
  assert.equal(cache.size, 1);
  assert.equal((await cache.fetch('e1', ['api'])).token, small.token, 'the small token is still cached');
});

test('dropping an entry forgets its tokens, and a signing call in flight for it is not stored', async () => {
  const clock = new FakeClock();
  let release: (v: SignedJwtSvid) => void = () => undefined;
  let n = 0;
  const cache = new JwtSvidCache(
    () => new Promise<SignedJwtSvid>((resolve) => (release = (v) => resolve({ ...v, token: `${v.token}${++n}` }))),
    clock,
  );
  const pending = cache.fetch('e1', ['a']);
  cache.dropEntry('e1');
  release({ token: 'old', issuedAt: clock.now(), expiresAt: clock.now() + TTL });
  assert.equal((await pending).token, 'old1', 'the caller still gets its answer');
  assert.equal(cache.size, 0, 'but it is not kept');
});

test('with no usable token cached, a signing budget refusal is waited out and the token signed after the hint; not past the deadline or the window', async () => {
  const clock = new FakeClock();
  let refusal: Error | undefined = resourceExhausted('signing rate limit reached; retry in 3 s');
  const calls: number[] = [];
  const cache = new JwtSvidCache(
    async () => {
      calls.push(clock.now());
      if (refusal) throw refusal;
      return { token: `t${calls.length}`, issuedAt: clock.now(), expiresAt: clock.now() + TTL };
    },
    clock,
    10,
    () => 0.5,
  );
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  };
  const start = clock.now();
  let answer: string | Error | undefined;
  cache.fetch('e1', ['a']).then(
    (jwt) => (answer = jwt.token),
    (err: Error) => (answer = err),
  );
  await turns();
  assert.deepEqual([calls.length, answer], [1, undefined], 'refused, and waiting');
  clock.advance(3499);
  await turns();
  assert.deepEqual([calls.length, answer], [1, undefined], 'no retry before the 3 s asked and the jitter (half a second at 0.5)');
  refusal = undefined;
  clock.advance(1);
  await turns();
  assert.deepEqual([calls, answer], [[start, start + 3500], 't2']);

  // A caller whose deadline comes before the retry is told at once.
  refusal = resourceExhausted('signing rate limit reached; retry in 3 s');
  await assert.rejects(cache.fetch('e2', ['a'], clock.now() + 3000), /retry in 3 s$/);
  // A wait that would end beyond the window is not made at all, and a refusal that keeps coming back is waited for
  // only while the next try falls within it. (Each after the previous refusal's wait: all signing waits for it.)
  clock.advance(3500);
  refusal = resourceExhausted('signing rate limit reached; retry in 20 s');
  await assert.rejects(cache.fetch('e3', ['a']), /retry in 20 s$/);
  clock.advance(20_500);
  refusal = resourceExhausted('signing rate limit reached; retry in 8 s');
  const before = calls.length;
  let failed: Error | undefined;
  cache.fetch('e4', ['a']).catch((err: Error) => (failed = err));
  for (let i = 0; i < 3; i++) {
    await turns();
    clock.advance(8500);
  }
  await turns();
  assert.match(String(failed), /retry in 8 s$/, 'given up once the next try would fall 25.5 s after the first refusal');
  assert.equal(calls.length - before, 3, 'tried at 0, 8.5 s and 17 s');
});

test('callers waiting on different audiences share one retry time, and at it one signing goes first: a refusal that comes back costs one call, not one per caller', async () => {
  const clock = new FakeClock();
  let refusal: Error | undefined = resourceExhausted('signing rate limit reached; retry in 3 s');
  const calls: string[] = [];
  const cache = new JwtSvidCache(
    async (_entryId, audience) => {
      calls.push(audience[0]!);
      if (refusal) throw refusal;
      return { token: `t-${audience[0]}`, issuedAt: clock.now(), expiresAt: clock.now() + TTL };
    },
    clock,
    10,
    () => 0.5,
  );
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  const audiences = ['a', 'b', 'c', 'd', 'e'];
  const answers = new Map<string, string | Error>();
  for (const aud of audiences) cache.fetch('e1', [aud]).then((jwt) => answers.set(aud, jwt.token), (err: Error) => answers.set(aud, err));
  await turns();
  assert.equal(calls.length, 5, 'all five were on their way before the first refusal came back');

  // A caller arriving during the wait makes no call of its own: it waits for the same retry time.
  cache.fetch('e1', ['f']).then((jwt) => answers.set('f', jwt.token), (err: Error) => answers.set('f', err));
  await turns();
  assert.equal(calls.length, 5);

  clock.advance(3500);
  await turns();
  assert.equal(calls.length - 5, 1, 'refused again: one call, and the others wait for the next retry time with it');
  assert.equal(answers.size, 0);

  refusal = undefined;
  clock.advance(3500);
  await turns();
  assert.deepEqual([...answers.keys()].sort(), [...audiences, 'f'].sort());
  assert.ok([...answers.values()].every((v) => typeof v === 'string'), 'every caller got its token');
  assert.equal(calls.length, 5 + 1 + 6, 'one signing per audience once the budget is back');
});

test('a caller that cancels while it waits for the budget stops waiting at once, and nothing is signed for it', async () => {
  const clock = new FakeClock();
  const calls: number[] = [];
  let refuse = true;
  const cache = new JwtSvidCache(
    async () => {
      calls.push(clock.now());
      if (refuse) throw resourceExhausted('signing rate limit reached; retry in 3 s');
      return { token: 't', issuedAt: clock.now(), expiresAt: clock.now() + TTL };
    },
    clock,
    10,
    () => 0.5,
  );
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  };
  const cancelled = new AbortController();
  let outcome: string | Error | undefined;
  cache.fetch('e1', ['a'], Infinity, cancelled.signal).then((jwt) => (outcome = jwt.token), (err: Error) => (outcome = err));
  await turns();
  assert.deepEqual([calls.length, outcome], [1, undefined], 'refused, and waiting');
  cancelled.abort();
  await turns();
  assert.ok(outcome instanceof Error, 'the wait ended with the call');
  refuse = false;
  clock.advance(20_000);
  await turns();
  assert.equal(calls.length, 1, 'no token signed for a caller that is gone');
  assert.equal(cache.size, 0);
});

/**
 * After a budget refusal, signings go one at a time (JwtSigningHold). One that the server is slow to answer (a
 * wedged call is cut only by the transport's 30 s deadline) must not hold the callers queued behind it past their own
 * call: a cancelled caller stops waiting, one past its deadline gives up, and one with a usable token cached gets it.
 */
function recoveringCache() {
  const clock = new FakeClock(Date.now() - 3600_000);
  const calls: string[] = [];
  let refusal: Error | undefined;
  const hung = new Map<string, () => void>();
  const cache = new JwtSvidCache(
    (_entryId, audience) => {
      const aud = audience[0]!;
      calls.push(aud);
      if (refusal) return Promise.reject(refusal);
      const jwt = { token: `t-${aud}-${calls.length}`, issuedAt: clock.now(), expiresAt: clock.now() + TTL };
      if (!aud.startsWith('slow')) return Promise.resolve(jwt);
      return new Promise<SignedJwtSvid>((resolve) => hung.set(aud, () => resolve(jwt)));
    },
    clock,
    10,
    () => 0.5,
  );
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  const setRefusal = (e: Error | undefined): void => void (refusal = e);
  return { clock, calls, cache, hung, turns, setRefusal };
}

async function intoOneAtATime(r: ReturnType<typeof recoveringCache>): Promise<void> {
  r.setRefusal(resourceExhausted('signing rate limit reached; retry in 3 s'));
  await assert.rejects(r.cache.fetch('e9', ['refused'], r.clock.now() + 1000), /retry in 3 s$/);
  r.setRefusal(undefined);
  r.clock.advance(3500);
  // The first signing after the wait goes alone, and the server is slow to answer it.
  void r.cache.fetch('e9', ['slow']);
  await r.turns();
  assert.equal(r.hung.size, 1);
}

test('a caller queued behind a slow signing after a budget refusal stops waiting when it cancels, and no token is signed for it', async () => {
  const r = recoveringCache();
  await intoOneAtATime(r);
  const cancelled = new AbortController();
  const got: { outcome?: string | Error } = {};
  r.cache.fetch('e1', ['x'], Infinity, cancelled.signal).then((jwt) => (got.outcome = jwt.token), (err: Error) => (got.outcome = err));
  await r.turns();
  assert.ok(!('outcome' in got), 'waiting for its turn');
  cancelled.abort();
  await r.turns();
  assert.ok(got.outcome instanceof Error, 'the wait ended with the call');
  r.hung.get('slow')!();
  await r.turns();
  assert.deepEqual(r.calls.filter((a) => a === 'x'), [], 'nothing signed for a caller that is gone');
});

test('a caller queued behind a slow signing after a budget refusal gives up at its deadline', async () => {
  const r = recoveringCache();
  await intoOneAtATime(r);
  const got: { outcome?: string | Error } = {};
  r.cache.fetch('e1', ['x'], r.clock.now() + 5000).then((jwt) => (got.outcome = jwt.token), (err: Error) => (got.outcome = err));
  await r.turns();
  r.clock.advance(5000);
  await r.turns();
  assert.ok(got.outcome instanceof Error, 'answered by its deadline');
  assert.match(got.outcome.message, /signing budget/);
});

test('a caller with a usable token cached is not queued behind a slow signing after a budget refusal: it gets that token', async () => {
  const r = recoveringCache();
  const held = await r.cache.fetch('e1', ['x']);
  r.clock.advance(TTL * 0.6);
  await intoOneAtATime(r);
  const got: { outcome?: string | Error } = {};
  r.cache.fetch('e1', ['x']).then((jwt) => (got.outcome = jwt.token), (err: Error) => (got.outcome = err));
  await r.turns();
  assert.equal(got.outcome, held.token);
});

test('a cache bound below one token is refused when it is made, not a cache that keeps nothing', () => {
  const sign = async (): Promise<SignedJwtSvid> => Promise.reject(new Error('unused'));
  assert.throws(() => new JwtSvidCache(sign, new FakeClock(), 0), /positive integer/);
  assert.throws(() => new JwtSvidCache(sign, new FakeClock(), 1.5), /positive integer/);
  assert.equal(new JwtSvidCache(sign, new FakeClock(), 1).maxSize, 1);
});

test('a call already cancelled when it asks (cancelled while its caller was attested) gets no token signed', async () => {
  const { calls, cache } = setup();
  const cancelled = new AbortController();
  cancelled.abort();
  await assert.rejects(cache.fetch('e1', ['a'], Infinity, cancelled.signal), /cancelled its call/);
  assert.equal(calls.length, 0, 'nothing signed for a caller that is gone');
  assert.equal(cache.size, 0);
});
