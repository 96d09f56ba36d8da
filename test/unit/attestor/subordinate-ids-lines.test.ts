/** subuid(5) lines as editors and tools leave them, and how often SubordinateIds reads its files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSubordinateRanges, SubordinateIds } from '../../../src/agent/attestor/subordinate-ids.js';

test('a commented-out subuid line is no range: its uids are their own budgets again', () => {
  assert.deepEqual(parseSubordinateRanges('#bob:200000:65536\n# carol:300000:65536\nalice:100000:65536\n'), [{ owner: 'alice', start: 100000, end: 165536 }]);
});

test('a subuid file saved with CRLF line ends or trailing spaces is read as written', () => {
  assert.deepEqual(parseSubordinateRanges('alice:100000:65536\r\n  bob:165536:65536  \r\n'), [
    { owner: 'alice', start: 100000, end: 165536 },
    { owner: 'bob', start: 165536, end: 231072 },
  ]);
});

test('the files are read once while they stay unchanged, and again when one changes', () => {
  const reads: string[] = [];
  let version = 0n;
  const files = new Map([['/subuid', 'alice:100000:65536\n'], ['/passwd', 'alice:x:1000:1000::/:/bin/sh\n']]);
  const hooks = {
    stat: (p: string) => ({ dev: 1n, ino: p === '/subuid' ? 1n : 2n, mtimeNs: version, ctimeNs: version, size: 1n }),
    readText: (p: string) => {
      reads.push(p);
      return files.get(p)!;
    },
  };
  const ids = new SubordinateIds(hooks, { subuid: '/subuid', passwd: '/passwd' });
  for (let i = 0; i < 5; i++) assert.equal(ids.accountOf(100000 + i), 1000);
  assert.deepEqual(reads, ['/subuid', '/passwd'], 'one reading serves every call while the files are unchanged');
  version++;
  files.set('/subuid', 'alice:200000:10\n');
  assert.equal(ids.accountOf(100000), 100000);
  assert.equal(ids.accountOf(200009), 1000);
  assert.equal(reads.length, 4);
});
