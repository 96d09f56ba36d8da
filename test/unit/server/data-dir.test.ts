import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { acquireDataDirLock } from '../../../src/common/data-dir-lock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { removeKilledFirstStart } from '../../../src/server/backup/restore-target.js';
import { openDataDir } from '../../../src/server/data-dir.js';
import { SERVER_LOCK_FILE } from '../../../src/server/backup/server-lock-probe.js';
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

test('a dir holding a file named like the marker\'s temp file but no .tmp (an editor\'s swap file) is not taken for a killed first start\'s: refused, left as it was', () => {
  const t = tempDir('meshid-data-dir-');
  try {
    const dataDir = path.join(t.dir, 'data');
    fs.mkdirSync(dataDir, { mode: 0o700 });
    fs.writeFileSync(path.join(dataDir, '.meshid-server.json.swp'), 'not meshid-server\'s');
    const before = contents(dataDir);
    assert.throws(() => openDataDir(dataDir, 'example.org'), /is not empty and is not a meshid-server data dir \(no meshid-server\.json\)/);
    assert.deepEqual(contents(dataDir), before);
    // The temp file a first start killed before its marker's rename leaves is one: the dir is claimed, the file gone.
    fs.rmSync(path.join(dataDir, '.meshid-server.json.swp'));
    fs.writeFileSync(path.join(dataDir, '.meshid-server.json.1a2b.tmp'), '{');
    openDataDir(dataDir, 'example.org')();
    assert.deepEqual(fs.readdirSync(dataDir).sort(), ['meshid-server.json', 'server.lock']);
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

/**
 * A data dir `data` under `dir` as a first start killed before its marker leaves it: its lock, no process holding it,
 * and the marker's temp file.
 */
function leftByKilledFirstStart(dir: string): { dataDir: string; lockFile: string } {
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir, { mode: 0o700 });
  const lockFile = path.join(dataDir, 'server.lock');
  acquireDataDirLock(lockFile, 'meshid-server')();
  fs.writeFileSync(path.join(dataDir, '.meshid-server.json.1a2b.tmp'), '{');
  return { dataDir, lockFile };
}

test('a start that opened a killed first start\'s lock before a restore emptied the dir, and locks it after, is not left holding a removed file: a second start is refused (the restore run between the two by a patched better-sqlite3 pragma)', () => {
  const t = tempDir('meshid-data-dir-');
  try {
    const { dataDir, lockFile } = leftByKilledFirstStart(t.dir);
    const pragma = Database.prototype.pragma;
    let restored = false;
    // Between the start's open of the lock file and its lock: the restore's lock, removal and release all fit there.
    Database.prototype.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions) {
      if (!restored && source === 'locking_mode = EXCLUSIVE' && this.name === lockFile) {
        restored = true;
        removeKilledFirstStart(dataDir);
        assert.equal(fs.existsSync(lockFile), false);
      }
      return pragma.call(this, source, options);
    } as typeof pragma;
    let unlock: () => void;
    try {
      unlock = openDataDir(dataDir, 'example.org');
    } finally {
      Database.prototype.pragma = pragma;
    }
    try {
      assert.ok(restored);
      assert.throws(() => openDataDir(dataDir, 'example.org'), (err) => {
        assert.ok(isMeshidError(err, 'failed_precondition'));
        assert.match(err.message, /in use by a running meshid-server or a meshid-server restore in progress/);
        return true;
      });
    } finally {
      unlock();
    }
  } finally {
    t.cleanup();
  }
});

test('a start whose lock file was replaced between its open and its lock (a restore removed it, another start made a new one and holds it) does not run beside that start: it is refused', () => {
  const t = tempDir('meshid-data-dir-');
  try {
    const { dataDir, lockFile } = leftByKilledFirstStart(t.dir);
    const pragma = Database.prototype.pragma;
    let replaced = false;
    let other: (() => void) | undefined;
    // Between this start's open of the lock file and its lock: the restore empties the dir, and a second start then
    // makes a new lock file at the same path (another inode on the same device) and takes it.
    Database.prototype.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions) {
      if (!replaced && source === 'locking_mode = EXCLUSIVE' && this.name === lockFile) {
        replaced = true;
        removeKilledFirstStart(dataDir);
        other = acquireDataDirLock(lockFile, 'meshid-server');
      }
      return pragma.call(this, source, options);
    } as typeof pragma;
    try {
      assert.throws(() => openDataDir(dataDir, 'example.org'), (err) => {
        assert.ok(isMeshidError(err, 'failed_precondition'));
        assert.match(err.message, /in use by a running meshid-server or a meshid-server restore in progress/);
        return true;
      });
      assert.ok(replaced);
    } finally {
      Database.prototype.pragma = pragma;
      other?.();
    }
  } finally {
    t.cleanup();
  }
});

test('a start on a data dir a restore holds locked is told a running server or a restore in progress may hold it, not that another server does', () => {
  const t = tempDir('meshid-data-dir-restore-lock-');
  try {
    const dataDir = path.join(t.dir, 'data');
    openDataDir(dataDir, 'example.org')();
    const lockFile = path.join(dataDir, SERVER_LOCK_FILE);
    // As `meshid-server restore` takes it (backup/data-dir-restore.ts, restore-target.ts).
    const release = acquireDataDirLock(lockFile, 'meshid-server restore');
    try {
      assert.throws(() => openDataDir(dataDir, 'example.org'), (err) => {
        assert.ok(isMeshidError(err, 'failed_precondition'));
        assert.equal(
          err.message,
          `the data dir is in use by a running meshid-server or a meshid-server restore in progress (it holds ${lockFile}); stop that server or let the restore finish, or use another --data-dir`,
        );
        return true;
      });
    } finally {
      release();
    }
    openDataDir(dataDir, 'example.org')();
  } finally {
    t.cleanup();
  }
});
