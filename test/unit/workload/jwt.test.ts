import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sign, type KeyObject } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Selector } from '../../../src/common/spiffe/selector.js';
import { FakeClock } from '../../../src/common/clock.js';
import { permissionDenied, unavailable } from '../../../src/common/errors.js';
import { parseJwtSvid, signJwtSvid } from '../../../src/common/jwt/jwt-svid.js';
import { encodeBase64Url, decodeBase64Url } from '../../../src/common/jwt/base64url.js';
import { grpcCode } from '../../../src/agent/cli/workload-client.js';
import { MAX_AUDIENCES } from '../../../src/common/jwt/audience-limits.js';
import { parseJwtSvidRequest } from '../../../src/agent/workload/jwt-request.js';
import { foreignBundle, makeJwtKey, TestCa } from '../../support/fake-workload-cache.js';
import { APP_A, APP_B, eventually, FOREIGN_TD, SELECTOR_A, SELECTOR_B, startWorkloadHarness, TD, type WorkloadHarness } from './workload-harness.js';

const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const UNAVAILABLE = 14;
const APP_C = 'spiffe://example.org/ns/default/sa/worker';
const PARTNER_APP = `spiffe://${FOREIGN_TD}/billing`;

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof Error, 'expected the call to fail');
  return err as Error;
}

async function expectCode(promise: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  const err = await failure(promise);
  assert.equal(grpcCode(err), code, err.message);
  if (message !== undefined) assert.match(err.message, message);
}

/** An ES256 JWT with any claims: issuers other than meshid may put more in their tokens than sub, aud, exp, iat. */
function es256Token(key: { kid: string; privateKey: KeyObject }, claims: Record<string, unknown>): string {
  const input = `${encodeBase64Url(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'JWT' }))}.${encodeBase64Url(JSON.stringify(claims))}`;
  return `${input}.${encodeBase64Url(sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }))}`;
}

let ca: TestCa;
let partner: TestCa;
const partnerKey = makeJwtKey('partner-key-1');
const clock = new FakeClock(Date.now());
let h: WorkloadHarness;
before(async () => {
  ca = new TestCa(TD);
  partner = new TestCa(FOREIGN_TD);
  h = await startWorkloadHarness(ca, (cache) => {
    cache.addEntry(SELECTOR_A, APP_A, { hint: 'main' });
    cache.addEntry(SELECTOR_A, APP_C, { hint: 'main', federatesWith: [FOREIGN_TD] });
    cache.addEntry(SELECTOR_B, APP_B);
    cache.setFederatedBundle(foreignBundle(partner, 1, partnerKey));
  }, { clock });
});
after(async () => {
  await h.close();
  ca.dispose();
  partner.dispose();
});

const asA = (): void => void (h.caller = [{ type: 'unix', value: 'uid:1001' }]);
const asNobody = (): void => void (h.caller = [{ type: 'unix', value: 'uid:4242' }]);

describe('FetchJWTSVID (attestation stubbed: caller has unix:uid:1001)', () => {
  test('no audience is INVALID_ARGUMENT "audience must be specified", even for an unregistered caller', async () => {
    asNobody();
    await expectCode(h.client.fetchJwtSvid([]), INVALID_ARGUMENT, /audience must be specified/);
    asA();
    await expectCode(h.client.fetchJwtSvid([]), INVALID_ARGUMENT, /audience must be specified/);
  });

  test('an empty-string audience is INVALID_ARGUMENT, alone or among others', async () => {
    await expectCode(h.client.fetchJwtSvid(['']), INVALID_ARGUMENT, /empty/);
    await expectCode(h.client.fetchJwtSvid(['db', '']), INVALID_ARGUMENT, /audience\[1\]/);
  });

  test(`at most ${MAX_AUDIENCES} audiences: one more is INVALID_ARGUMENT`, async () => {
    const many = Array.from({ length: MAX_AUDIENCES }, (_, i) => `aud-${i}`);
    const ok = await h.client.fetchJwtSvid(many, APP_A);
    assert.deepEqual(parseJwtSvid(ok.svids[0]!.svid).claims['aud'], many);
    // Counted while the request's bytes are walked, before decoding (repeated-limits.ts); the handler's own check
    // stays for a request that reaches it another way.
    await expectCode(h.client.fetchJwtSvid([...many, 'one-more']), INVALID_ARGUMENT, /JWTSVIDRequest\.audience \(field 1\) holds more than 64 values/);
    assert.throws(() => parseJwtSvidRequest({ audience: [...many, 'one-more'] }), /too many audiences: 65 \(at most 64\)/);
  });

  test('a malformed spiffe_id is INVALID_ARGUMENT; a well-formed one the caller does not hold is PERMISSION_DENIED', async () => {
    for (const bad of ['not-a-spiffe-id', 'spiffe://Example.org/app', 'spiffe://example.org/a/', 'https://example.org/x']) {
      await expectCode(h.client.fetchJwtSvid(['db'], bad), INVALID_ARGUMENT, undefined);
    }
    await expectCode(h.client.fetchJwtSvid(['db'], APP_B), PERMISSION_DENIED);
  });

  test('an unregistered caller gets PERMISSION_DENIED and the cache is not asked to mint', async () => {
    asNobody();
    const calls = h.cache.jwtCalls.length;
    await expectCode(h.client.fetchJwtSvid(['db']), PERMISSION_DENIED);
    assert.equal(h.cache.jwtCalls.length, calls);
    asA();
  });

  test('without spiffe_id: one token per entitled identity (later duplicate hint dropped), sub = spiffe_id, aud = request', async () => {
    const res = await h.client.fetchJwtSvid(['db', 'cache']);
    assert.deepEqual(res.svids.map((s) => s.spiffe_id), [APP_A]);
    assert.equal(res.svids[0]!.hint, 'main');
    const { claims, header } = parseJwtSvid(res.svids[0]!.svid);
    assert.equal(claims['sub'], APP_A);
    assert.deepEqual(claims['aud'], ['db', 'cache']);
    assert.equal(header['kid'], h.cache.jwtKey.kid);
    assert.deepEqual(h.cache.jwtCalls.at(-1)?.audience, ['db', 'cache']);
  });

  test('before its first sync since start, a spiffe_id no entry held names is UNAVAILABLE (retry), not PERMISSION_DENIED', async () => {
    // Served from the data dir (the server unreachable, say): the entry may have been made while the agent was down.
    h.cache.isSynced = false;
    try {
      await expectCode(h.client.fetchJwtSvid(['db'], APP_B), UNAVAILABLE, new RegExp(`the agent has not synced with meshid-server since it started or attested again: no entry it holds gives the caller ${APP_B}; retry$`));
      const res = await h.client.fetchJwtSvid(['db'], APP_A);
      assert.deepEqual(res.svids.map((s) => s.spiffe_id), [APP_A], 'an identity the restored state names is served meanwhile');
    } finally {
      h.cache.isSynced = true;
    }
    await expectCode(h.client.fetchJwtSvid(['db'], APP_B), PERMISSION_DENIED);
  });

  test('before its first sync since start, without spiffe_id, the cached entries\' signing refused (deleted on the server while the agent was down) is UNAVAILABLE (retry), not PERMISSION_DENIED; after the sync, unchanged', async () => {
    // What IdentityCache.fetchJwtSvids throws when the server refused the signing of every entry it held for the caller
    // and they were dropped: none left matches. Admission saw the entries, so the caller got past it.
    const fetchJwtSvids = h.cache.fetchJwtSvids;
    h.cache.fetchJwtSvids = async () => {
      throw permissionDenied('no registration entry matches the caller');
    };
    h.cache.isSynced = false;
    try {
      await expectCode(h.client.fetchJwtSvid(['db']), UNAVAILABLE, /the agent has not synced with meshid-server since it started or attested again: no entry it holds gives the caller an identity; retry$/);
      h.cache.isSynced = true;
      await expectCode(h.client.fetchJwtSvid(['db']), PERMISSION_DENIED, /no registration entry matches the caller/);
    } finally {
      h.cache.isSynced = true;
      h.cache.fetchJwtSvids = fetchJwtSvids;
    }
  });

  test('with spiffe_id: only that identity', async () => {
    const res = await h.client.fetchJwtSvid(['db'], APP_C);
    assert.deepEqual(res.svids.map((s) => s.spiffe_id), [APP_C]);
    assert.equal(parseJwtSvid(res.svids[0]!.svid).claims['sub'], APP_C);
  });

  test('failed attestation is UNAVAILABLE', async () => {
    h.attestError = unavailable('workload attestation failed: pid 0');
    try {
      await expectCode(h.client.fetchJwtSvid(['db']), UNAVAILABLE);
    } finally {
      h.attestError = undefined;
    }
  });
});

describe('ValidateJWTSVID (attestation stubbed)', () => {
  test('round trip: a token from FetchJWTSVID validates; claims carry sub, aud (a list) and exp (a number)', async () => {
    asA();
    const token = (await h.client.fetchJwtSvid(['db'])).svids[0]!.svid;
    const res = await h.client.validateJwtSvid('db', token);
    assert.equal(res.spiffeId, APP_A);
    assert.equal(res.claims['sub'], APP_A);
    assert.deepEqual(res.claims['aud'], ['db']);
    assert.equal(typeof res.claims['exp'], 'number');
    assert.equal(res.claims['exp'], parseJwtSvid(token).claims['exp']);
  });

  test('an audience the token does not carry is INVALID_ARGUMENT with the reason', async () => {
    const token = (await h.client.fetchJwtSvid(['db'])).svids[0]!.svid;
    await expectCode(h.client.validateJwtSvid('payments', token), INVALID_ARGUMENT, /audience does not include "payments"/);
  });

  test('a tampered signature or payload is INVALID_ARGUMENT', async () => {
    const token = (await h.client.fetchJwtSvid(['db'])).svids[0]!.svid;
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const sig = decodeBase64Url(signature, 'signature');
    sig[5]! ^= 0x01;
    await expectCode(h.client.validateJwtSvid('db', `${header}.${payload}.${encodeBase64Url(sig)}`), INVALID_ARGUMENT, /signature is invalid/);
    const claims = { ...parseJwtSvid(token).claims, sub: APP_B };
    await expectCode(h.client.validateJwtSvid('db', `${header}.${encodeBase64Url(JSON.stringify(claims))}.${signature}`), INVALID_ARGUMENT, /signature is invalid/);
  });

  test('a huge alg, typ, kid, header name or unmatched audience is INVALID_ARGUMENT with the value cut short, not a status too large to send', async () => {
    // 200 KB quoted whole made a status trailer larger than HTTP/2 sends (64 KB): the caller got only its deadline.
    const huge = 'k'.repeat(200_000);
    const iat = Math.floor(clock.now() / 1000);
    const payload = encodeBase64Url(JSON.stringify({ sub: APP_B, aud: 'db', exp: iat + 300, iat }));
    const withHeader = (header: Record<string, unknown>): string => `${encodeBase64Url(JSON.stringify(header))}.${payload}.AAAA`;
    const kid = h.cache.jwtKey.kid;
    for (const [token, reason] of [
      [withHeader({ alg: huge, kid }), /^token algorithm "kkk+… \(200002 characters\) is not allowed/],
      [withHeader({ alg: 'ES256', kid, typ: huge }), /^token typ "kkk+… \(200002 characters\) is not JWT or JOSE$/],
      [withHeader({ alg: 'ES256', kid, [huge]: 1 }), /^token header parameter "kkk+… \(200002 characters\) is not allowed/],
      [withHeader({ alg: 'ES256', kid: huge }), /^no key with kid "kkk+… \(200002 characters\) in the bundle for example\.org$/],
    ] as const) {
      const err = await failure(h.client.validateJwtSvid('db', token));
      assert.equal(grpcCode(err), INVALID_ARGUMENT, err.message.slice(0, 200));
      assert.match(err.message, reason);
      assert.ok(err.message.length < 200, `${err.message.length} characters`);
    }
    const token = (await h.client.fetchJwtSvid(['db'], APP_A)).svids[0]!.svid;
    await expectCode(h.client.validateJwtSvid(huge, token), INVALID_ARGUMENT, /^token audience does not include "kkk+… \(200002 characters\)$/);
  });

  test('a kid cut short in the middle of an emoji is INVALID_ARGUMENT quoting whole characters, and the agent keeps serving', async () => {
    // Cut between the halves of a surrogate pair, the message held a lone surrogate: grpc-js's encodeURI threw on it,
    // the caller got no status and the agent process died of the unhandled rejection.
    const iat = Math.floor(clock.now() / 1000);
    const payload = encodeBase64Url(JSON.stringify({ sub: APP_B, aud: 'db', exp: iat + 300, iat }));
    const kid = `${'k'.repeat(62)}${'😀'.repeat(10)}`;
    const token = `${encodeBase64Url(JSON.stringify({ alg: 'ES256', kid }))}.${payload}.AAAA`;
    const err = await failure(h.client.validateJwtSvid('db', token));
    assert.equal(grpcCode(err), INVALID_ARGUMENT, err.message.slice(0, 200));
    assert.match(err.message, /^no key with kid "k{62}… \(84 characters\) in the bundle for example\.org$/);
    asA();
    const next = (await h.client.fetchJwtSvid(['db'])).svids[0]!.svid;
    assert.equal((await h.client.validateJwtSvid('db', next)).spiffeId, APP_A);
  });

  test('a header member name or sub holding a lone surrogate (a \\ud800 escape in the token\'s JSON) is INVALID_ARGUMENT, and the agent keeps serving', async () => {
    // Quoted raw, such a value made a status message grpc-js's encodeURI threw on: no status, and the agent died.
    const iat = Math.floor(clock.now() / 1000);
    const kid = h.cache.jwtKey.kid;
    const token = (header: Record<string, unknown>, claims: Record<string, unknown>): string =>
      `${encodeBase64Url(JSON.stringify(header))}.${encodeBase64Url(JSON.stringify(claims))}.AAAA`;
    const claims = { sub: APP_B, aud: 'db', exp: iat + 300, iat };
    for (const bad of [token({ alg: 'ES256', kid, ['x\ud800']: 1 }, claims), token({ alg: 'ES256', kid }, { ...claims, sub: 'spiffe://example.org/\ud800' })]) {
      const err = await failure(h.client.validateJwtSvid('db', bad));
      assert.equal(grpcCode(err), INVALID_ARGUMENT, err.message.slice(0, 200));
    }
    asA();
    const next = (await h.client.fetchJwtSvid(['db'])).svids[0]!.svid;
    assert.equal((await h.client.validateJwtSvid('db', next)).spiffeId, APP_A);
  });

  test('missing audience or svid is INVALID_ARGUMENT before attestation', async () => {
    const attested = h.attestCalls();
    await expectCode(h.client.validateJwtSvid('', 'a.b.c'), INVALID_ARGUMENT, /audience must be specified/);
    await expectCode(h.client.validateJwtSvid('db', ''), INVALID_ARGUMENT, /svid must be specified/);
    assert.equal(h.attestCalls(), attested);
  });

  test('a federated trust domain\'s token validates only for callers whose entries federate with it', async () => {
    const iat = Math.floor(clock.now() / 1000);
    const foreign = signJwtSvid({ privateKey: partnerKey.privateKey, kid: partnerKey.kid, sub: PARTNER_APP, aud: ['db'], iat, exp: iat + 300 });
    assert.equal((await h.client.validateJwtSvid('db', foreign)).spiffeId, PARTNER_APP, 'A federates through APP_C');
    // B's entry does not federate, and a caller without entries has only the own trust domain: what FetchJWTBundles
    // gives each of them, so validating here agrees with validating locally.
    for (const caller of [[{ type: 'unix', value: 'uid:1002' }], [{ type: 'unix', value: 'uid:4242' }]]) {
      h.caller = caller;
      try {
        await expectCode(h.client.validateJwtSvid('db', foreign), INVALID_ARGUMENT, /no bundle for trust domain partner\.example: .*federating with it/);
      } finally {
        asA();
      }
    }
  });

  test('a token of a federated trust domain validates against that domain\'s bundle only', async () => {
    const iat = Math.floor(clock.now() / 1000);
    const foreign = signJwtSvid({ privateKey: partnerKey.privateKey, kid: partnerKey.kid, sub: PARTNER_APP, aud: ['db'], iat, exp: iat + 300 });
    assert.equal((await h.client.validateJwtSvid('db', foreign)).spiffeId, PARTNER_APP);
    // The partner's key must not vouch for an own-domain subject: the key is looked up in the sub's domain only.
    const forged = signJwtSvid({ privateKey: partnerKey.privateKey, kid: partnerKey.kid, sub: APP_A, aud: ['db'], iat, exp: iat + 300 });
    await expectCode(h.client.validateJwtSvid('db', forged), INVALID_ARGUMENT, /no key with kid "partner-key-1" in the bundle for example\.org/);
    // A domain the agent has no bundle for is untrusted.
    const stranger = signJwtSvid({ privateKey: partnerKey.privateKey, kid: partnerKey.kid, sub: 'spiffe://stranger.example/x', aud: ['db'], iat, exp: iat + 300 });
    await expectCode(h.client.validateJwtSvid('db', stranger), INVALID_ARGUMENT, /no bundle for trust domain stranger\.example/);
  });

  test('an expired token is INVALID_ARGUMENT (time from the injected clock)', async () => {
    const token = (await h.client.fetchJwtSvid(['db'])).svids[0]!.svid;
    clock.advance((h.cache.jwtTtlSeconds + 61) * 1000);
    await expectCode(h.client.validateJwtSvid('db', token), INVALID_ARGUMENT, /expired/);
  });

  test('an unregistered caller may validate (no identity needed), but attestation must succeed', async () => {
    asNobody();
    try {
      const token = signJwtSvid({
        privateKey: h.cache.jwtKey.privateKey, kid: h.cache.jwtKey.kid, sub: APP_B, aud: ['db'],
        iat: Math.floor(clock.now() / 1000), exp: Math.floor(clock.now() / 1000) + 300,
      });
      assert.equal((await h.client.validateJwtSvid('db', token)).spiffeId, APP_B);
      h.attestError = new Error('cannot read /proc');
      await expectCode(h.client.validateJwtSvid('db', token), UNAVAILABLE);
    } finally {
      h.attestError = undefined;
      asA();
    }
  });
});

describe('ValidateJWTSVID claims of foreign trust domains (attestation stubbed: caller has unix:uid:1001)', () => {
  const richClaims = (sub: string): Record<string, unknown> => {
    const iat = Math.floor(clock.now() / 1000);
    return { sub, aud: 'db', exp: iat + 300, iat, iss: 'https://partner.example', groups: ['admin'] };
  };

  test('a foreign token answers only sub, aud and exp: a federated domain does not vouch for other claims', async () => {
    const res = await h.client.validateJwtSvid('db', es256Token(partnerKey, richClaims(PARTNER_APP)));
    assert.equal(res.spiffeId, PARTNER_APP);
    assert.deepEqual(Object.keys(res.claims).sort(), ['aud', 'exp', 'sub']);
    assert.deepEqual(res.claims['aud'], ['db']);
  });

  test('an own-domain token answers every claim', async () => {
    const res = await h.client.validateJwtSvid('db', es256Token(h.cache.jwtKey, richClaims(APP_B)));
    assert.deepEqual(Object.keys(res.claims).sort(), ['aud', 'exp', 'groups', 'iat', 'iss', 'sub']);
    assert.deepEqual(res.claims['groups'], ['admin']);
  });

  test('a claim named __proto__ is answered as the claim it is, at the top and nested (go-spiffe keeps any name)', async () => {
    const iat = Math.floor(clock.now() / 1000);
    // Written as JSON text: an object literal with __proto__ would set a prototype, not a member.
    const payload = `{"sub":"${APP_B}","aud":"db","exp":${iat + 300},"__proto__":{"role":"admin"},"ctx":{"__proto__":"x"}}`;
    const input = `${encodeBase64Url(JSON.stringify({ alg: 'ES256', kid: h.cache.jwtKey.kid, typ: 'JWT' }))}.${encodeBase64Url(payload)}`;
    const token = `${input}.${encodeBase64Url(sign('sha256', Buffer.from(input), { key: h.cache.jwtKey.privateKey, dsaEncoding: 'ieee-p1363' }))}`;
    const res = await h.client.validateJwtSvid('db', token);
    assert.deepEqual(Object.keys(res.claims).sort(), ['__proto__', 'aud', 'ctx', 'exp', 'sub']);
    assert.equal(Object.getPrototypeOf(res.claims), Object.prototype, 'a claim never becomes a prototype');
    assert.equal(JSON.stringify(res.claims['__proto__']), '{"role":"admin"}');
    assert.equal(JSON.stringify(res.claims['ctx']), '{"__proto__":"x"}');
  });

  test('allowedForeignJwtClaims adds the claims named, and only those, to foreign tokens\' answers', async () => {
    const allowing = await startWorkloadHarness(ca, (cache) => {
      cache.addEntry(SELECTOR_A, APP_C, { federatesWith: [FOREIGN_TD] });
      cache.setFederatedBundle(foreignBundle(partner, 1, partnerKey));
    }, { clock, options: { allowedForeignJwtClaims: ['iss', 'tenant'] } });
    try {
      const res = await allowing.client.validateJwtSvid('db', es256Token(partnerKey, richClaims(PARTNER_APP)));
      assert.deepEqual(Object.keys(res.claims).sort(), ['aud', 'exp', 'iss', 'sub']);
      assert.equal(res.claims['iss'], 'https://partner.example');
    } finally {
      await allowing.close();
    }
  });
});

test('FetchJWTSVID cancelled while its caller is being attested gets no JWT-SVID signed: the cache is told at once', async () => {
  let attested!: () => void;
  const held = new Promise<void>((resolve) => (attested = resolve));
  const slow = await startWorkloadHarness(ca, (cache) => cache.addEntry(SELECTOR_A, APP_A), { attestHeld: () => held });
  try {
    const signals: AbortSignal[] = [];
    const fetch = slow.cache.fetchJwtSvids.bind(slow.cache);
    slow.cache.fetchJwtSvids = async (selectors: readonly Selector[], audience: readonly string[], spiffeId?: string, _deadline?: number, signal?: AbortSignal) => {
      if (signal !== undefined) signals.push(signal);
      return fetch(selectors, audience, spiffeId);
    };
    const raw = slow.rawClient() as unknown as Record<string, (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>;
    const metadata = new grpc.Metadata();
    metadata.set('workload.spiffe.io', 'true');
    let done: grpc.ServiceError | null | undefined;
    const call = raw['FetchJWTSVID']!.call(raw, { audience: ['db'] }, metadata, (err: grpc.ServiceError | null) => (done = err));
    await eventually(() => slow.attestCalls() === 1, 'the caller is being attested');
    call.cancel();
    await eventually(() => done !== undefined, 'the client saw its call cancelled');
    // Not a timing assertion: a moment for the cancellation to reach the server before the attestation answers, so
    // the handler finds the call cancelled already (had it not arrived yet, the listener covers it, and this passes).
    await new Promise((r) => setTimeout(r, 100));
    attested();
    await eventually(() => signals.length === 1, 'the cache was asked');
    await eventually(() => signals[0]!.aborted, 'the cache learns the call is gone, and signs nothing for it');
  } finally {
    await slow.close();
  }
});
