/**
 * `meshid-server restore` cut short, on real processes and files: a restore that cannot write (a full disk, a
 * read-only file system), one killed (SIGKILL) at any of its steps, one whose staging directory another restore takes
 * for a leftover, and one sent SIGINT or SIGTERM leave no data dir or a complete one, and nothing else, and run again.
 * (server-restore-command.test.ts has restores that run through and the refusals.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../support/server-kit.js';
import { fillDisk, mountTmpfs } from '../support/tmpfs.js';
import { serverPausedAt } from '../support/paused-process.js';
import { startServerProcess } from '../support/server-process.js';
import { backedUp, refusedAsSpent, restoreCli, restoreKilledAt, stagingLeft } from '../support/server-restore-kit.js';
import { teardown } from '../support/teardown.js';

test('a restore that cannot write (a full disk, before or midway; a read-only file system) says so, naming the data dir and where it was written, and leaves nothing', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-disk-');
  teardown(t).after(cleanup);
  const full = mountTmpfs(t, '1m');
  const small = mountTmpfs(t, '64k');
  const readOnly = mountTmpfs(t, '1m', { readOnly: true });
  if (full === undefined || small === undefined || readOnly === undefined) return;
  const { live, backup } = await backedUp(dir);
  assert.equal(await live.stop(), 0);
  const filler = fillDisk(full);

  for (const [parent, message] of [
    [full, /the disk is full; nothing of it was kept\. Make room there/],
    // The datastore does not fit: the copy fails midway, after the lock and the marker.
    [small, /the disk is full; nothing of it was kept\. Make room there/],
    [readOnly, /the file system is read-only; nothing of it was kept\. Restore into a directory this user can write/],
  ] as const) {
    const d = path.join(parent, 'data');
    const r = await restoreCli(['--from', backup, '--data-dir', d]);
    assert.equal(r.code, 1, r.out);
    assert.equal(r.out, '');
    assert.match(r.err, new RegExp(`^Error: \\w+: cannot restore into ${d}: writing it in ${parent} failed: `));
    assert.match(r.err, message);
    assert.deepEqual(fs.readdirSync(parent), parent === full ? [path.basename(filler)] : [], 'no data dir, no staging directory, no key copy');
  }
});

test('a restore killed (SIGKILL) at each of its steps leaves no data dir or a complete one with its tokens voided, and runs again', { timeout: 180_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-crash-');
  teardown(t).after(cleanup);
  const { live, backup, roots, tokens } = await backedUp(dir);
  assert.equal(await live.stop(), 0);

  for (const { point, complete } of [
    { point: 'restore-files:0', complete: false },
    { point: 'restore-files:3', complete: false },
    { point: 'before-restore-rename', complete: false },
    { point: 'after-restore-rename', complete: true },
  ]) {
    await t.test(point, async (st) => {
      const where = path.join(dir, point.replace(/:/g, '-'));
      fs.mkdirSync(where);
      const d = path.join(where, 'data');
      const killed = await restoreKilledAt(['--from', backup, '--data-dir', d], point);
      assert.equal(killed.signal, 'SIGKILL', killed.output);
      if (complete) {
        assert.deepEqual(stagingLeft(where), []);
      } else {
        assert.equal(fs.existsSync(d), false, 'no data dir before the rename');
        assert.equal(stagingLeft(where).length, 1, 'the staging directory the kill left');
        const rerun = await restoreCli(['--from', backup, '--data-dir', d]);
        assert.equal(rerun.code, 0, rerun.err);
        assert.match(rerun.err, /^Removed \S+\/data\.restoring-[0-9a-f]{12}, which an interrupted restore left\.$/m);
        assert.deepEqual(stagingLeft(where), [], 'the leftover, a copy of the CA keys, is gone');
      }
      const server = await startServerProcess(where);
      teardown(st).after(() => server.stop());
      assert.equal((await server.cli(['bundle', 'show'])).out, roots);
      for (const token of tokens) await refusedAsSpent(server, roots, token);
      assert.equal(await server.stop(), 0);
    });
  }
});

test('a restore whose new staging directory another restore into the same data dir takes for a killed one\'s leftover starts again under a new name: one restores, the other is told the data dir was made meanwhile, nothing is left; one while another holds its staging lock is told another restore runs', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-race-');
  teardown(t).after(cleanup);
  const { live, backup, roots, tokens } = await backedUp(dir);
  assert.equal(await live.stop(), 0);
  const where = path.join(dir, 'race');
  fs.mkdirSync(where);
  const d = path.join(where, 'data');

  // First made its staging directory and is about to lock it: to the second, it looks like what a kill -9 left.
  const first = serverPausedAt(['restore', '--from', backup, '--data-dir', d], ['restore-lock']);
  teardown(t).after(() => first.resume());
  await first.paused('restore-lock');
  const [firstStaging] = stagingLeft(where);
  const second = await restoreCli(['--from', backup, '--data-dir', d]);
  assert.equal(second.code, 0, second.err);
  assert.match(second.err, new RegExp(`^Removed ${path.join(where, firstStaging!)}, which an interrupted restore left\\.$`, 'm'));

  first.resume();
  const r = await first.done;
  assert.equal(r.code, 1, r.out);
  assert.match(r.err, new RegExp(`^Error: \\w+: ${d} was made or filled while the restore ran \\(a server started on it\\?\\): nothing was restored`, 'm'));
  assert.deepEqual(stagingLeft(where), [], 'neither staging directory is left');
  const server = await startServerProcess(where);
  teardown(t).after(() => server.stop());
  assert.equal((await server.cli(['bundle', 'show'])).out, roots);
  for (const token of tokens) await refusedAsSpent(server, roots, token);
  assert.equal(await server.stop(), 0);

  // A restore into a data dir while another one into it holds its staging directory's lock is told so, naming it,
  // and touches nothing of it; the one running ends as if alone.
  const d2 = path.join(where, 'data2');
  const running = serverPausedAt(['restore', '--from', backup, '--data-dir', d2], ['restore-copy']);
  teardown(t).after(() => running.kill('SIGKILL'));
  await running.paused('restore-copy');
  const [runningStaging] = stagingLeft(where);
  const refused = await restoreCli(['--from', backup, '--data-dir', d2]);
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.err, new RegExp(`^Error: \\w+: another restore into ${d2} is running \\(it holds ${path.join(where, runningStaging!)}/server\\.lock\\): let it end first$`, 'm'));
  assert.deepEqual(stagingLeft(where), [runningStaging], 'the running restore\'s staging directory is left to it');
  running.resume();
  const ran = await running.done;
  assert.equal(ran.code, 0, ran.err);
  assert.ok(fs.existsSync(path.join(d2, 'datastore.sqlite3')));
});

test('a restore sent SIGINT or SIGTERM midway stops before the data dir is made, removes its staging directory (a copy of the CA keys), exits 1 saying so, and runs again', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-signal-');
  teardown(t).after(cleanup);
  const { live, backup, roots } = await backedUp(dir);
  assert.equal(await live.stop(), 0);

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    await t.test(signal, async (st) => {
      const where = path.join(dir, signal);
      fs.mkdirSync(where);
      const d = path.join(where, 'data');
      const restore = serverPausedAt(['restore', '--from', backup, '--data-dir', d], ['restore-lock']);
      // Paused, it waits for the test forever: a failed check before the signal must not leave it so.
      teardown(st).after(() => restore.kill('SIGKILL'));
      await restore.paused('restore-lock');
      assert.equal(stagingLeft(where).length, 1);
      restore.kill(signal);
      restore.resume();
      const r = await restore.done;
      assert.equal(r.code, 1, r.err);
      assert.equal(r.out, '');
      assert.match(r.err, new RegExp(`^Error: Aborted: interrupted by ${signal}: nothing was restored, ${d} was not made; run the restore again$`, 'm'));
      assert.deepEqual(fs.readdirSync(where), [], 'no data dir, no staging directory');

      const again = await restoreCli(['--from', backup, '--data-dir', d]);
      assert.equal(again.code, 0, again.err);
      assert.doesNotMatch(again.err, /Removed/, 'nothing left to remove');
    });
  }
  const server = await startServerProcess(path.join(dir, 'SIGTERM'));
  teardown(t).after(() => server.stop());
  assert.equal((await server.cli(['bundle', 'show'])).out, roots);
});
