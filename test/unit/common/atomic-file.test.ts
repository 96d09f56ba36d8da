import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, writeFilesAtomic } from '../../../src/common/atomic-file.js';
import { mountTmpfs } from '../../support/tmpfs.js';

const fullDisk = (t: Parameters<typeof mountTmpfs>[0]): string | undefined => mountTmpfs(t, '64k');

const entries = (dir: string): string[] => fs.readdirSync(dir).sort();

test('a write the disk has no room for fails, keeps the old content and leaves no temp file, however often retried', (t) => {
  const dir = fullDisk(t);
  if (dir === undefined) return;
  const file = path.join(dir, 'key.pem');
  writeFileAtomic(file, 'old');
  for (let i = 0; i < 3; i++) {
    assert.throws(() => writeFileAtomic(file, Buffer.alloc(256 * 1024, 1)), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC');
  }
  assert.deepEqual(entries(dir), ['key.pem']);
  assert.equal(fs.readFileSync(file, 'utf8'), 'old');
});

test('a set of files the disk has no room for: none replaced, no temp file left, also for the one that failed', (t) => {
  const dir = fullDisk(t);
  if (dir === undefined) return;
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  writeFilesAtomic([{ file: a, data: 'a0' }, { file: b, data: 'b0' }]);
  assert.throws(
    () => writeFilesAtomic([{ file: a, data: 'a1' }, { file: b, data: Buffer.alloc(256 * 1024, 1) }]),
    (err: NodeJS.ErrnoException) => err.code === 'ENOSPC',
  );
  assert.deepEqual(entries(dir), ['a', 'b']);
  assert.deepEqual([fs.readFileSync(a, 'utf8'), fs.readFileSync(b, 'utf8')], ['a0', 'b0']);
});
