/**
 * One server per data dir and per admin socket: a second `meshid-server run` on either is refused before it touches
 * anything, and the running server keeps its socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runRefused, startServerProcess } from '../support/server-process.js';

test('a second server on the same data dir or admin socket is refused, and the first keeps serving', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-exclusive-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = await startServerProcess(dir, ['--datacenter', 'east']);
  t.after(() => first.stop());
  const run = (dataDir: string, adminSocket: string) =>
    runRefused(['--trust-domain', 'example.org', '--datacenter', 'east', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', adminSocket]);

  const sameDir = await run(first.dataDir, path.join(dir, 'other-admin', 'admin.sock'));
  assert.notEqual(sameDir.code, 0);
  assert.match(sameDir.err, new RegExp(`the data dir is in use by another meshid-server \\(it holds `));

  const sameSocket = await run(path.join(dir, 'other-data'), first.adminSocket);
  assert.notEqual(sameSocket.code, 0);
  assert.match(sameSocket.err, /admin\.sock is in use: another process accepts connections on it/);

  const health = await first.cli(['healthcheck']);
  assert.equal(health.code, 0, `the first server still answers on its socket: ${health.err}`);

  // Once the first server is gone, even killed with no chance to clean up, its data dir is free again.
  await first.stop('SIGKILL');
  const again = await startServerProcess(dir, ['--datacenter', 'east']);
  t.after(() => again.stop());
  assert.equal((await again.cli(['healthcheck'])).code, 0);
});
