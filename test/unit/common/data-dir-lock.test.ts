/**
 * acquireDataDirLock (meshid-agent's and meshid-server's) on data dirs that cannot take the lock file: real small
 * tmpfs mounts, full, out of inodes or read-only (root only, as CI runs; skipped otherwise).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { acquireDataDirLock } from '../../../src/common/data-dir-lock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { fillDisk, mountTmpfs } from '../../support/tmpfs.js';
import { teardown } from '../../support/teardown.js';

const refusedFor = (dir: string, cause: RegExp) => (err: unknown): boolean => {
  assert.ok(isMeshidError(err, 'failed_precondition'), `a failed_precondition, not ${String(err)}`);
  assert.match(err.message, new RegExp(`^cannot lock the data dir ${dir}: `));
  assert.match(err.message, cause);
  assert.match(err.message, /meshid-agent writes its lock, keys and state there/);
  return true;
};

test('a data dir on a full disk: the lock is refused naming the dir and "the disk is full", not SQLite\'s words', (t) => {
  const dir = mountTmpfs(t, '256k');
  if (dir === undefined) return;
  fillDisk(dir);
  assert.throws(() => acquireDataDirLock(path.join(dir, 'agent.lock'), 'meshid-agent'), refusedFor(dir, /: the disk is full\./));
});

test('a data dir on a file system out of inodes: refused, saying so', (t) => {
  const dir = mountTmpfs(t, '256k', { inodes: 16 });
  if (dir === undefined) return;
  // Out of inodes with blocks to spare: many empty files, until the file system takes no more.
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(path.join(dir, `f${i}`), '');
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      break;
    }
  }
  assert.throws(() => acquireDataDirLock(path.join(dir, 'agent.lock'), 'meshid-agent'), refusedFor(dir, /no free inodes/));
});

test('a data dir on a read-only file system: refused, saying so', (t) => {
  const dir = mountTmpfs(t, '256k', { readOnly: true });
  if (dir === undefined) return;
  assert.throws(() => acquireDataDirLock(path.join(dir, 'agent.lock'), 'meshid-agent'), refusedFor(dir, /the file system is read-only/));
});

test('once the disk has room again the lock is taken, and held', (t) => {
  const dir = mountTmpfs(t, '256k');
  if (dir === undefined) return;
  const filler = fillDisk(dir);
  const file = path.join(dir, 'agent.lock');
  // Refused for the full disk, so that what follows is a lock taken once there is room, not one never refused.
  assert.throws(() => acquireDataDirLock(file, 'meshid-agent'), refusedFor(dir, /: the disk is full\./));
  fs.rmSync(filler);
  const unlock = acquireDataDirLock(file, 'meshid-agent');
  try {
    assert.throws(() => acquireDataDirLock(file, 'meshid-agent'), /in use by another meshid-agent/);
  } finally {
    unlock();
  }
});

test('the lock file is owner-only (0600) whatever the umask lets through, also one an earlier version left 0644', (t) => {
  const dir = fs.mkdtempSync(path.join('/tmp', 'meshid-lock-mode-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fresh = path.join(dir, 'agent.lock');
  const unlock = acquireDataDirLock(fresh, 'meshid-agent');
  teardown(t).after(unlock);
  assert.equal(fs.statSync(fresh).mode & 0o777, 0o600);

  const left = path.join(dir, 'server.lock');
  fs.writeFileSync(left, '', { mode: 0o644 });
  fs.chmodSync(left, 0o644);
  const unlockLeft = acquireDataDirLock(left, 'meshid-server');
  teardown(t).after(unlockLeft);
  assert.equal(fs.statSync(left).mode & 0o777, 0o600);
});
