import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseSubordinateRanges, SubordinateIds } from '../../../src/agent/attestor/subordinate-ids.js';

test('subuid(5) lines: owner by name or uid; comments, blank, malformed and empty ranges skipped', () => {
  assert.deepEqual(parseSubordinateRanges('# comment\n\nalice:100000:65536\n1001:165536:65536\nbad:x:1\nnone:200000:0\ntoo:1:2:3\n'), [
    { owner: 'alice', start: 100000, end: 165536 },
    { owner: '1001', start: 165536, end: 231072 },
  ]);
});

test("a subordinate uid counts as its owner's uid, read again when the files change; other uids as themselves", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-subuid-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const subuid = path.join(dir, 'subuid');
  const passwd = path.join(dir, 'passwd');
  fs.writeFileSync(passwd, 'alice:x:1000:1000::/home/alice:/bin/sh\n');
  fs.writeFileSync(subuid, 'alice:100000:65536\n1001:165536:65536\nghost:300000:10\n');
  const ids = new SubordinateIds(undefined, { subuid, passwd });
  assert.equal(ids.accountOf(100000), 1000);
  assert.equal(ids.accountOf(165535), 1000);
  assert.equal(ids.accountOf(165536), 1001);
  // An owner /etc/passwd does not name: the range is one budget all the same.
  assert.equal(ids.accountOf(300005), 300000);
  assert.equal(ids.accountOf(1000), 1000);
  assert.equal(ids.accountOf(99999), 99999);
  fs.writeFileSync(subuid, 'alice:100000:10\n');
  assert.equal(ids.accountOf(100011), 100011);
  fs.rmSync(subuid);
  assert.equal(ids.accountOf(100000), 100000);
  // No /etc/subuid at all (most containers): every uid is its own.
  assert.equal(new SubordinateIds(undefined, { subuid: path.join(dir, 'none'), passwd }).accountOf(100000), 100000);
});

test('a subuid file that cannot be read keeps the ranges last read, and never throws', () => {
  let fail = false;
  const files = new Map([['/subuid', 'alice:100000:65536\n'], ['/passwd', 'alice:x:1000:1000::/:/bin/sh\n']]);
  let version = 0n;
  const hooks = {
    stat: (p: string) => {
      if (fail) throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
      if (!files.has(p)) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return { dev: 1n, ino: p === '/subuid' ? 1n : 2n, mtimeNs: version, ctimeNs: version, size: 1n };
    },
    readText: (p: string) => files.get(p)!,
  };
  const ids = new SubordinateIds(hooks, { subuid: '/subuid', passwd: '/passwd' });
  assert.equal(ids.accountOf(100001), 1000);
  fail = true;
  version++;
  assert.equal(ids.accountOf(100001), 1000);
});

test('an owner named twice in /etc/passwd is its first line\'s uid, and an edit of /etc/passwd alone is read again', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-subuid-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const subuid = path.join(dir, 'subuid');
  const passwd = path.join(dir, 'passwd');
  fs.writeFileSync(subuid, 'alice:100000:65536\n');
  fs.writeFileSync(passwd, 'alice:x:1000:1000::/home/alice:/bin/sh\nalice:x:2000:2000::/home/alice2:/bin/sh\n');
  const ids = new SubordinateIds(undefined, { subuid, passwd });
  assert.equal(ids.accountOf(100000), 1000, 'the first line, as getpwnam(3) answers');
  fs.writeFileSync(passwd, 'alice:x:1500:1500::/home/alice:/bin/sh\n');
  assert.equal(ids.accountOf(100000), 1500, 'alice renumbered: her subordinate uids follow');
});
