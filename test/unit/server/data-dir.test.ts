import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isMeshidError } from '../../../src/common/errors.js';
import { openDataDir } from '../../../src/server/data-dir.js';
import { tempDir } from '../../support/server-kit.js';

/** Every file under `dir` with its bytes, to prove a refusal changed nothing. */
function contents(dir: string): Record<string, string> {
  return Object.fromEntries(
    fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((n) => {
      const f = path.join(dir, n);
      return [n, fs.statSync(f).isDirectory() ? '(dir)' : fs.readFileSync(f, 'latin1')];
    }),
  );
}

test('a data dir a newer meshid-server marked (a rollback) is refused in one line naming both formats, and left as it was', () => {
  const t = tempDir('meshid-data-dir-');
  try {
    const dataDir = path.join(t.dir, 'data');
    openDataDir(dataDir, 'example.org')();
    fs.writeFileSync(path.join(dataDir, 'meshid-server.json'), JSON.stringify({ trust_domain: 'example.org', format: 2, more: 'of a newer version' }) + '\n');
    fs.writeFileSync(path.join(dataDir, 'datastore.sqlite3'), 'a newer version\'s datastore');
    const before = contents(dataDir);
    assert.throws(() => openDataDir(dataDir, 'example.org'), (err) => {
      assert.ok(isMeshidError(err, 'failed_precondition'));
      assert.equal(
        err.message,
        `data dir ${dataDir} has format 2, written by a newer meshid-server (this one reads format 1): restore it from a backup, or run the meshid-server that wrote it`,
      );
      return true;
    });
    assert.deepEqual(contents(dataDir), before);
  } finally {
    t.cleanup();
  }
});

test('a data dir marker of an unknown format that is no newer one is refused as such', () => {
  const t = tempDir('meshid-data-dir-');
  try {
    const dataDir = path.join(t.dir, 'data');
    openDataDir(dataDir, 'example.org')();
    fs.writeFileSync(path.join(dataDir, 'meshid-server.json'), JSON.stringify({ trust_domain: 'example.org', format: 'one' }));
    assert.throws(() => openDataDir(dataDir, 'example.org'), /has format one, this meshid-server reads format 1: restore it from a backup/);
  } finally {
    t.cleanup();
  }
});

test('a data dir whose path runs through a file is refused naming that file, not with a bare ENOTDIR, and nothing is made', () => {
  const t = tempDir('meshid-data-dir-');
  try {
    const file = path.join(t.dir, 'a-file');
    fs.writeFileSync(file, 'not a directory');
    assert.throws(() => openDataDir(path.join(file, 'data'), 'example.org'), (err) => {
      assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
      assert.match(err.message, new RegExp(`${file} is not a directory`));
      return true;
    });
    assert.deepEqual(fs.readdirSync(t.dir), ['a-file']);
  } finally {
    t.cleanup();
  }
});
