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
