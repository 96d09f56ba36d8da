import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JwtSvidCache, type SignedJwtSvid } from '../../../src/agent/cache/jwt-svid-cache.js';
import { permissionDenied, unavailable } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';

const TTL = 300_000;
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const SPIFFE_IDS: Record<string, string> = { e1: 'spiffe://example.org/web', e2: 'spiffe://example.org/api' };

function setup(size = 10) {
  const clock = new FakeClock();
  const { log, records, text } = capturingLogger('agent');
  let fail: Error | undefined;
  let n = 0;
  const tokens: string[] = [];
  const sign = async (entryId: string, audience: readonly string[]): Promise<SignedJwtSvid> => {
    if (fail) throw fail;
    const iat = clock.now();
    const token = `${b64({ alg: 'ES256', kid: 'k1', typ: 'JWT' })}.${b64({ sub: SPIFFE_IDS[entryId] ?? `spiffe://example.org/${entryId}`, aud: audience, exp: (iat + TTL) / 1000, n: ++n })}.c2lnbmF0dXJl`;
    tokens.push(token);
    return { token, issuedAt: iat, expiresAt: iat + TTL };
  };
  const cache = new JwtSvidCache(sign, clock, size, Math.random, undefined, log);
  const warnings = () => records().filter((r) => r.level === LEVEL.warn);
  return { clock, cache, warnings, text, tokens, setFail: (e: Error | undefined) => (fail = e) };
}

test('a cached JWT-SVID returned because its refresh failed is logged at warn: entry, SPIFFE ID, reason, valid until; never the token', async () => {
  const { clock, cache, warnings, text, tokens, setFail } = setup();
  const first = await cache.fetch('e1', ['db']);
  const receivedAt = clock.now();
  clock.advance(TTL / 2);
  setFail(unavailable('meshid-server unreachable: connect ECONNREFUSED'));
  assert.equal((await cache.fetch('e1', ['db'])).token, first.token);
  const lines = warnings();
  assert.equal(lines.length, 1);
  const line = lines[0]!;
  assert.equal(line['entryId'], 'e1');
  assert.equal(line['spiffeId'], 'spiffe://example.org/web');
  assert.equal(line['reason'], 'meshid-server unreachable: connect ECONNREFUSED');
  assert.equal(line['code'], 'unavailable');
  assert.equal(line['cachedUsableUntil'], new Date(receivedAt + TTL).toISOString());
  assert.equal(line['suppressedSinceLast'], undefined);
  for (const token of tokens) {
    assert.ok(!text().includes(token), 'the token is not logged');
    for (const part of token.split('.')) assert.ok(!text().includes(part), 'no part of the token is logged');
  }
});

test('the fallback warning is throttled to one line per entry a minute, counting the ones left out', async () => {
  const { clock, cache, warnings, setFail } = setup();
  await cache.fetch('e1', ['db']);
  await cache.fetch('e1', ['api']);
  await cache.fetch('e2', ['db']);
  clock.advance(TTL / 2);
  setFail(unavailable('meshid-server unreachable'));
  for (let i = 0; i < 6; i++) {
    await cache.fetch('e1', ['db']);
    // Another audience is another token of the same entry: it shares the entry's line.
    await cache.fetch('e1', ['api']);
    clock.advance(1000);
  }
  await cache.fetch('e2', ['db']);
  assert.deepEqual(
    warnings().map((l) => [l['entryId'], l['suppressedSinceLast']]),
    [
      ['e1', undefined],
      ['e2', undefined],
    ],
    'one line for e1 in its first minute, and e2 is not hidden behind it',
  );
  clock.advance(60_000 - 6000);
  await cache.fetch('e1', ['db']);
  const last = warnings().at(-1)!;
  assert.equal(last['entryId'], 'e1');
  assert.equal(last['suppressedSinceLast'], 11);
  assert.equal(warnings().length, 3);
});

test('a refusal of the entry (PERMISSION_DENIED) drops the token and is not logged as a fallback', async () => {
  const { clock, cache, warnings, setFail } = setup();
  await cache.fetch('e1', ['db']);
  clock.advance(TTL / 2);
  setFail(permissionDenied('the entry is not authorized for this agent'));
  await assert.rejects(cache.fetch('e1', ['db']), /not authorized/);
  assert.equal(warnings().length, 0);
});

test('a caller that cancelled while the refresh was under way is handed the cached token without a fallback warning', async () => {
  const clock = new FakeClock();
  const { log, records } = capturingLogger('agent');
  let hang = false;
  const sign = async (entryId: string, audience: readonly string[]): Promise<SignedJwtSvid> => {
    if (hang) return new Promise<SignedJwtSvid>(() => undefined);
    const iat = clock.now();
    return { token: `${b64({ alg: 'ES256', kid: 'k1' })}.${b64({ sub: SPIFFE_IDS[entryId], aud: audience })}.c2ln`, issuedAt: iat, expiresAt: iat + TTL };
  };
  const cache = new JwtSvidCache(sign, clock, 10, Math.random, undefined, log);
  const first = await cache.fetch('e1', ['db']);
  clock.advance(TTL / 2);
  hang = true;
  const controller = new AbortController();
  const pending = cache.fetch('e1', ['db'], Infinity, controller.signal);
  await new Promise((r) => setImmediate(r));
  controller.abort();
  assert.equal((await pending).token, first.token);
  assert.equal(records().filter((r) => r.level === LEVEL.warn).length, 0, 'nobody is served: no outage to report');
});

test('the throttle keeps one key per cached token: 300 entries failing in turn get one line each a minute, not one per fallback', async () => {
  const entries = Array.from({ length: 300 }, (_, i) => `e${i}`);
  const { clock, cache, warnings, setFail } = setup(entries.length);
  for (const e of entries) await cache.fetch(e, ['db']);
  clock.advance(TTL / 2);
  setFail(unavailable('meshid-server unreachable'));
  // Twice round within the minute: a throttle that forgot the oldest keys past 256 would log the second round too.
  for (let round = 0; round < 2; round++) for (const e of entries) await cache.fetch(e, ['db']);
  assert.equal(warnings().length, entries.length);
});
