import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { writeFileAtomic, writeFilesAtomic } from '../../../src/common/atomic-file.js';

/** A real full disk: a small tmpfs, which needs root (CI runs as root). */
function fullDisk(t: { after(fn: () => void): void; skip(reason: string): void }): string | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-atomic-full-'));
  const mounted = process.geteuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir]).status === 0;
  t.after(() => {
    if (mounted) spawnSync('umount', [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  if (!mounted) t.skip('needs root, to mount a small tmpfs');
  return mounted ? dir : undefined;
}

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
