import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateEntry, validateSelector } from '../../../src/server/api/entry-validation.js';

const unix = (value: string) => ({ type: 'unix', value });

test('numeric unix ids are accepted as the attestor writes them, up to 4294967294', () => {
  for (const v of ['uid:0', 'uid:1000', 'gid:4294967294', 'supplementary_gid:65534']) assert.deepEqual(validateSelector(unix(v), 0), unix(v));
});

test('a unix id no process can have is refused, saying why and what to write', () => {
  const cases: Array<[string, string]> = [
    ['uid:0100', 'selector 1: unix:uid:0100 can never match: the attestor writes ids without leading zeros; write unix:uid:100'],
    ['gid:00', 'selector 1: unix:gid:00 can never match: the attestor writes ids without leading zeros; write unix:gid:0'],
    ['uid:4294967295', 'selector 1: unix:uid:4294967295 can never match: ids go up to 4294967294'],
    ['supplementary_gid:9999999999', 'selector 1: unix:supplementary_gid:9999999999 can never match: ids go up to 4294967294'],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => validateSelector(unix(value), 0), (err: Error & { code?: string }) => err.code === 'invalid_argument' && err.message === message, value);
  }
});

test('a unix selector without a value (unix:uid, unix:path:) says the value is missing, for every key', () => {
  const cases: Array<[string, string]> = [
    ['uid', 'selector 1: unix:uid has no value: write unix:uid:<uid> (a numeric uid)'],
    ['uid:', 'selector 1: unix:uid has no value: write unix:uid:<uid> (a numeric uid)'],
    ['user', 'selector 1: unix:user has no value: write unix:user:<user> (a user name)'],
    ['gid', 'selector 1: unix:gid has no value: write unix:gid:<gid> (a numeric gid)'],
    ['group', 'selector 1: unix:group has no value: write unix:group:<group> (a group name)'],
    ['supplementary_gid', 'selector 1: unix:supplementary_gid has no value: write unix:supplementary_gid:<gid> (a numeric gid)'],
    ['supplementary_group', 'selector 1: unix:supplementary_group has no value: write unix:supplementary_group:<group> (a group name)'],
    ['path:', 'selector 1: unix:path has no value: write unix:path:<path> (an absolute path)'],
    ['sha256', 'selector 1: unix:sha256 has no value: write unix:sha256:<sha256> (64 lowercase hex digits)'],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => validateSelector(unix(value), 0), (err: Error & { code?: string }) => (err.code === 'invalid_argument' && err.message === message) || assert.fail(`${value}: ${err.message}`));
  }
});

test('a unix selector key named like an Object.prototype member is refused as unknown, not a TypeError', () => {
  for (const v of ['constructor:1', 'toString:x', '__proto__:1', 'hasOwnProperty']) {
    assert.throws(
      () => validateSelector(unix(v), 0),
      (err: Error & { code?: string }) => (err.code === 'invalid_argument' && /is not a selector the unix attestor makes/.test(err.message)) || assert.fail(`${v}: ${err.message}`),
    );
  }
});

test("meshid's namespace is refused as an entry's SPIFFE ID, its root (spiffe://<td>/meshid) as well as the paths under it; look-alike paths are not", () => {
  const limits = { trustDomain: 'example.org', maxX509SvidTtlMs: 86_400_000, maxJwtSvidTtlMs: 86_400_000 };
  const entry = (path: string) => ({ spiffe_id: `spiffe://example.org${path}`, parent_id: 'spiffe://example.org/meshid/server', selectors: [unix('uid:1')] });
  for (const path of ['/meshid', '/meshid/server', '/meshid/agent/east/x', '/meshid/other']) {
    assert.throws(
      () => validateEntry(entry(path), limits),
      (err: Error & { code?: string }) =>
        (err.code === 'invalid_argument' && err.message === `spiffe_id "spiffe://example.org${path}" is in the reserved /meshid namespace (server and agent identities)`) ||
        assert.fail(`${path}: ${err.message}`),
    );
  }
  for (const path of ['/meshid2', '/meshidx/a', '/Meshid', '/a/meshid', '/meshid.d/x']) assert.equal(validateEntry(entry(path), limits).spiffeId, `spiffe://example.org${path}`);
});

const LIMITS = { trustDomain: 'example.org', maxX509SvidTtlMs: 86_400_000, maxJwtSvidTtlMs: 3_600_000 };
const base = { spiffe_id: 'spiffe://example.org/web', parent_id: 'spiffe://example.org/meshid/agent/dc1/a1', selectors: [unix('uid:1000')] };

/** validateEntry refuses `e` with an invalid_argument whose message matches `message`. */
function refuses(e: Record<string, unknown>, message: RegExp, what: string): void {
  assert.throws(
    () => validateEntry({ ...base, ...e }, LIMITS),
    (err: Error & { code?: string }) => (err.code === 'invalid_argument' && message.test(err.message)) || assert.fail(`${what}: ${err.message}`),
    what,
  );
}

test('an entry is refused when it is its own parent, has no selector, or federates with its own trust domain', () => {
  refuses({ parent_id: base.spiffe_id }, /cannot be its own parent/, 'own parent');
  refuses({ selectors: [] }, /at least one selector is required/, 'no selector');
  refuses({ federates_with: ['example.org'] }, /foreign trust domains, not our own/, 'own trust domain');
  assert.deepEqual(validateEntry({ ...base, federates_with: ['b.org', 'a.org', 'b.org'] }, LIMITS).federatesWith, ['a.org', 'b.org']);
});

test("an entry's TTLs: 0 is the default, the maximum itself is accepted, a second more or a negative one is refused", () => {
  const ok = validateEntry({ ...base, x509_svid_ttl: 86_400, jwt_svid_ttl: 3600 }, LIMITS);
  assert.deepEqual([ok.x509SvidTtlSeconds, ok.jwtSvidTtlSeconds], [86_400, 3600]);
  const dflt = validateEntry(base, LIMITS);
  assert.deepEqual([dflt.x509SvidTtlSeconds, dflt.jwtSvidTtlSeconds], [0, 0]);
  refuses({ x509_svid_ttl: 86_401 }, /^x509_svid_ttl 1d1s exceeds the server's max_x509_svid_ttl/, 'x509 over the maximum');
  refuses({ jwt_svid_ttl: 3601 }, /^jwt_svid_ttl .* exceeds the server's max_jwt_svid_ttl/, 'jwt over the maximum');
  refuses({ x509_svid_ttl: -1 }, /x509_svid_ttl must be a whole number of seconds ≥ 0/, 'negative');
  refuses({ jwt_svid_ttl: 1.5 }, /jwt_svid_ttl must be a whole number of seconds ≥ 0/, 'fraction');
});

test("an entry's hint may hold 1024 bytes and no more; admin, downstream and the hint are kept as given", () => {
  const e = validateEntry({ ...base, hint: 'é'.repeat(512), admin: true, downstream: true }, LIMITS);
  assert.deepEqual([e.hint, e.admin, e.downstream], ['é'.repeat(512), true, true]);
  const plain = validateEntry(base, LIMITS);
  assert.deepEqual([plain.hint, plain.admin, plain.downstream], ['', false, false]);
  refuses({ hint: `${'é'.repeat(512)}x` }, /hint is longer than 1024 bytes/, 'hint of 1025 bytes');
});

test("an entry's selectors and federates_with hold at most 128 members; selectors are deduplicated and sorted", () => {
  const uids = (n: number) => Array.from({ length: n }, (_, i) => unix(`uid:${i}`));
  assert.equal(validateEntry({ ...base, selectors: uids(128) }, LIMITS).selectors.length, 128);
  refuses({ selectors: uids(129) }, /^129 selectors: at most 128 are accepted/, '129 selectors');
  const tds = (n: number) => Array.from({ length: n }, (_, i) => `td${i}.org`);
  assert.equal(validateEntry({ ...base, federates_with: tds(128) }, LIMITS).federatesWith.length, 128);
  refuses({ federates_with: tds(129) }, /^129 federates_with trust domains: at most 128/, '129 trust domains');
  const e = validateEntry({ ...base, selectors: [unix('uid:2'), unix('gid:5'), unix('uid:2'), unix('uid:10')] }, LIMITS);
  assert.deepEqual(e.selectors, [unix('gid:5'), unix('uid:10'), unix('uid:2')]);
});

test('a selector needs a lowercase type and a value of 1-1024 bytes', () => {
  assert.deepEqual(validateSelector({ type: 'docker', value: 'x'.repeat(1024) }, 0), { type: 'docker', value: 'x'.repeat(1024) });
  for (const [s, message] of [
    [{ type: 'Unix', value: 'uid:1' }, /type "Unix" is invalid/],
    [{ type: '', value: 'uid:1' }, /type "" is invalid/],
    [{ type: 'docker', value: '' }, /value is empty/],
    [{ type: 'docker', value: 'x'.repeat(1025) }, /value is longer than 1024 bytes/],
  ] as const) {
    assert.throws(() => validateSelector(s, 0), (err: Error & { code?: string }) => (err.code === 'invalid_argument' && message.test(err.message)) || assert.fail(`${s.type}: ${err.message}`));
  }
});

test("an entry's DNS names: lowercased and deduplicated, a wildcard only as the first of three labels or more, 253 characters at most", () => {
  const e = validateEntry({ ...base, dns_names: ['Web.Example.org', 'web.example.org', '*.example.org', 'a-b.example.org', 'a-b.example.org'] }, LIMITS);
  assert.deepEqual(e.dnsNames, ['web.example.org', '*.example.org', 'a-b.example.org']);
  const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  assert.equal(long.length, 253);
  assert.deepEqual(validateEntry({ ...base, dns_names: [long] }, LIMITS).dnsNames, [long]);
  refuses({ dns_names: [`${long}d`] }, /must be 1-253 characters/, '254 characters');
  for (const name of ['*.org', 'a.*.example.org', 'web-.example.org', '-web.example.org', 'web..example.org', 'we b.example.org']) {
    refuses({ dns_names: [name] }, /is invalid: label/, name);
  }
});
