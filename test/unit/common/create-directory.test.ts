import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createDirectory, directoryCreationError } from '../../../src/common/create-directory.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { tempDir } from '../../support/server-kit.js';
import { teardown } from '../../support/teardown.js';

test('createDirectory makes the missing parents and returns the first it made, as mkdir -p; nothing when all exist', (t) => {
  const { dir, cleanup } = tempDir('meshid-create-dir-');
  teardown(t).after(cleanup);
  const deep = path.join(dir, 'a', 'b', 'c');
  assert.equal(createDirectory(deep, 0o700), path.join(dir, 'a'));
  assert.ok(fs.statSync(deep).isDirectory());
  assert.equal(fs.statSync(path.join(dir, 'a')).mode & 0o077, 0, 'made with the mode given');
  assert.equal(createDirectory(deep, 0o700), undefined);
});

test('createDirectory under /proc throws ENOENT at once (Node\'s recursive mkdir loops for ever there)', () => {
  assert.throws(() => createDirectory('/proc/nope/deeper', 0o700), { code: 'ENOENT', path: '/proc/nope' });
});

test('a path through a file: ENOTDIR, explained as which component is no directory', (t) => {
  const { dir, cleanup } = tempDir('meshid-create-dir-');
  teardown(t).after(cleanup);
  const file = path.join(dir, 'file');
  fs.writeFileSync(file, '');
  let thrown: unknown;
  try {
    createDirectory(path.join(file, 'sub'), 0o700);
  } catch (err) {
    thrown = err;
  }
  const explained = directoryCreationError(thrown, path.join(file, 'sub'), 'data directory', '--data-dir, data_dir');
  assert.ok(isMeshidError(explained));
  assert.equal((explained as Error).message, `cannot create the data directory ${file}/sub (--data-dir, data_dir): ${file} is not a directory; move it away or choose another path`);
  assert.throws(() => createDirectory(file, 0o700), { code: 'EEXIST' }, 'the path itself a file');
});

test('a path through a symlink and `..` is created where the kernel resolves it, as mkdir -p does, and the relative form works too', (t) => {
  const { dir, cleanup } = tempDir('meshid-create-dir-');
  teardown(t).after(cleanup);
  fs.mkdirSync(path.join(dir, 'real', 'inner'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'top'));
  fs.symlinkSync(path.join(dir, 'real', 'inner'), path.join(dir, 'top', 'link'));
  // top/link/.. is real/, not top/: the directory the caller goes on to use must be the one made.
  const through = path.join(dir, 'top', 'link') + '/../made/deeper';
  assert.equal(createDirectory(through, 0o700), path.join(dir, 'top', 'link') + '/../made');
  assert.ok(fs.statSync(through).isDirectory());
  assert.ok(fs.statSync(path.join(dir, 'real', 'made', 'deeper')).isDirectory());
  assert.equal(fs.existsSync(path.join(dir, 'top', 'made')), false, 'nothing made beside the link');

  const cwd = process.cwd();
  process.chdir(dir);
  teardown(t).after(() => process.chdir(cwd));
  assert.equal(createDirectory('rel/a/', 0o700), 'rel');
  assert.ok(fs.statSync(path.join(dir, 'rel', 'a')).isDirectory());
});
