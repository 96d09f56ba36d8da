import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createDirectory, directoryCreationError } from '../../../src/common/create-directory.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { tempDir } from '../../support/server-kit.js';

test('createDirectory makes the missing parents and returns the first it made, as mkdir -p; nothing when all exist', (t) => {
  const { dir, cleanup } = tempDir('meshid-create-dir-');
  t.after(cleanup);
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
  t.after(cleanup);
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
