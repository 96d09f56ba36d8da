import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic, writeFilesAtomic } from '../../../src/common/atomic-file.js';
import { tempDir } from '../../support/server-kit.js';
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

test('a set of files one of whose renames fails (a directory in its place): the files before it are new, the rest as they were, and no temp file is left', () => {
  const { dir, cleanup } = tempDir('meshid-atomic-set-');
  try {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => path.join(dir, n)) as [string, string, string];
    writeFilesAtomic([{ file: a, data: 'a0' }, { file: c, data: 'c0' }]);
    // rename(2) of a file over a directory fails (EISDIR) for real, whoever runs the test.
    fs.mkdirSync(b);
    assert.throws(
      () => writeFilesAtomic([{ file: a, data: 'a1' }, { file: b, data: 'b1' }, { file: c, data: 'c1' }]),
      (err: NodeJS.ErrnoException) => err.code === 'EISDIR',
    );
    assert.deepEqual(entries(dir), ['a', 'b', 'c']);
    assert.deepEqual([fs.readFileSync(a, 'utf8'), fs.statSync(b).isDirectory(), fs.readFileSync(c, 'utf8')], ['a1', true, 'c0']);
  } finally {
    cleanup();
  }
});

test('a private directory it creates is made durable in its parent, as is each parent it creates on the way (fsync calls recorded)', (t) => {
  const { dir: root, cleanup } = tempDir('meshid-durable-dir-');
  t.after(cleanup);
  const dataDir = path.join(root, 'var', 'lib', 'meshid');
  // Which directories got an fsync: a power cut can only be judged by the calls made before it.
  const openSync = fs.openSync;
  const fsyncSync = fs.fsyncSync;
  const opened = new Map<number, string>();
  const synced: string[] = [];
  fs.openSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
    opened.set(fd, path.resolve(String(p)));
    return fd;
  }) as typeof fs.openSync;
  fs.fsyncSync = ((fd: number) => {
    synced.push(opened.get(fd) ?? `fd ${fd}`);
    fsyncSync(fd);
  }) as typeof fs.fsyncSync;
  try {
    ensurePrivateDir(dataDir);
  } finally {
    fs.openSync = openSync;
    fs.fsyncSync = fsyncSync;
  }
  // Files fsynced inside a directory whose own name never reached the disk are lost with it at a power cut (with the
  // agent's identity, a spent join token; with a server's CA keys, the trust domain).
  for (const parent of [root, path.join(root, 'var'), path.join(root, 'var', 'lib')]) assert.ok(synced.includes(parent), `${parent} fsynced: ${synced.join(', ')}`);
  synced.length = 0;
  fs.fsyncSync = ((fd: number) => {
    synced.push(String(fd));
    fsyncSync(fd);
  }) as typeof fs.fsyncSync;
  try {
    ensurePrivateDir(dataDir);
  } finally {
    fs.fsyncSync = fsyncSync;
  }
  assert.deepEqual(synced, [], 'nothing to make durable when the directory was there');
});
