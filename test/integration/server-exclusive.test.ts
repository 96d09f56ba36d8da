/**
 * One server per data dir and per admin socket: a second `meshid-server run` on either is refused before it touches
 * anything, and the running server keeps its socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serverPausedAt } from '../support/paused-process.js';
import { runNode, runRefused, SERVER_MAIN, startServerProcess } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

test('a second server on the same data dir or admin socket is refused, and the first keeps serving', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-exclusive-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = await startServerProcess(dir, ['--datacenter', 'east']);
  teardown(t).after(() => first.stop());
  const run = (dataDir: string, adminSocket: string) =>
    runRefused(['--trust-domain', 'example.org', '--datacenter', 'east', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', adminSocket]);

  const sameDir = await run(first.dataDir, path.join(dir, 'other-admin', 'admin.sock'));
  assert.notEqual(sameDir.code, 0);
  assert.match(sameDir.err, /the data dir is in use by a running meshid-server or a meshid-server restore in progress \(it holds /);

  const sameSocket = await run(path.join(dir, 'other-data'), first.adminSocket);
  assert.notEqual(sameSocket.code, 0);
  assert.match(sameSocket.err, /admin\.sock \(--admin-socket, admin_socket\) is in use: another process accepts connections on it/);

  const health = await first.cli(['healthcheck']);
  assert.equal(health.code, 0, `the first server still answers on its socket: ${health.err}`);

  // Once the first server is gone, even killed with no chance to clean up, its data dir is free again.
  await first.stop('SIGKILL');
  const again = await startServerProcess(dir, ['--datacenter', 'east']);
  teardown(t).after(() => again.stop());
  assert.equal((await again.cli(['healthcheck'])).code, 0);
});

test('a first start whose admin socket another server listens on is refused before its new data dir is claimed: a retry with another trust domain and socket starts', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-exclusive-socket-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = await startServerProcess(path.join(dir, 'first'), ['--datacenter', 'east']);
  teardown(t).after(() => first.stop());
  const retryDir = path.join(dir, 'retry');
  const dataDir = path.join(retryDir, 'data');
  const refused = await runRefused(['--trust-domain', 'first.org', '--datacenter', 'east', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', first.adminSocket]);
  assert.equal(refused.code, 1, refused.err);
  assert.match(refused.err, /^Error: FailedPrecondition: \S+admin\.sock \(--admin-socket, admin_socket\) is in use: another process accepts connections on it/m);
  assert.equal(fs.existsSync(dataDir), false, 'nothing was written: no data dir, no CA');
  assert.equal((await first.cli(['healthcheck'])).code, 0, 'the first server keeps its socket');

  // The operator fixes the trust domain as well as the socket: the data dir is still free for it.
  const retry = await startServerProcess(retryDir, ['--trust-domain', 'example.com', '--datacenter', 'east']);
  teardown(t).after(() => retry.stop());
  assert.equal(JSON.parse(fs.readFileSync(path.join(dataDir, 'meshid-server.json'), 'utf8')).trust_domain, 'example.com');
});

test('two first starts racing on one new data dir with different trust domains: the one refused (data dir in use) leaves no marker, and the marker names the trust domain of the one that serves', { timeout: 120_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-first-start-race-'));
  const dataDir = path.join(dir, 'data');
  const run = (trustDomain: string, admin: string) =>
    ['run', '--trust-domain', trustDomain, '--datacenter', 'east', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(dir, admin, 'admin.sock')];

  // The first found the dir new and is about to put its marker in place; the second starts in between.
  const first = serverPausedAt(run('example.org', 'first'), ['data-dir-marker'], { MESHID_LOG_LEVEL: 'info' });
  // One hook, the server ended before its directory goes: after hooks run in the order they were added, and a server
  // still running could write into the directory while it is removed.
  teardown(t).after(async () => {
    first.kill('SIGKILL');
    await first.done;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await first.paused('data-dir-marker');
  const second = await runRefused(run('example.com', 'second').slice(1));
  assert.notEqual(second.code, 0, `the second start must be refused: ${second.err}`);
  assert.match(second.err, /the data dir is in use by a running meshid-server or a meshid-server restore in progress \(it holds /);

  first.resume();
  // Its last start-up line, logged once every listener is up; should it fail instead, this says why.
  await first.printed('meshid-server is running');
  const health = await runNode(SERVER_MAIN, ['healthcheck', '--admin-socket', path.join(dir, 'first', 'admin.sock')]);
  assert.equal(health.code, 0, `the first start serves: ${health.err}`);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dataDir, 'meshid-server.json'), 'utf8')).trust_domain, 'example.org');
});

test('a first start that found its data dir new, then waited for the lock while another trust domain\'s server claimed the dir, ran and stopped, is refused as that trust domain\'s dir: it looks again under the lock', { timeout: 120_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-first-look-race-'));
  const dataDir = path.join(dir, 'data');
  // Looked (no data dir yet) and is about to create its lock file; the other server runs in between.
  const late = serverPausedAt(
    ['run', '--trust-domain', 'example.com', '--datacenter', 'east', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(dir, 'late', 'admin.sock')],
    ['data-dir-lock'],
    { MESHID_LOG_LEVEL: 'info' },
  );
  teardown(t).after(async () => {
    late.kill('SIGKILL');
    await late.done;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await late.paused('data-dir-lock');
  const other = await startServerProcess(dir, ['--datacenter', 'east']);
  teardown(t).after(() => other.stop());
  assert.equal(await other.stop(), 0);
  const claimed = fs.readFileSync(path.join(dataDir, 'meshid-server.json'), 'utf8');
  assert.equal(JSON.parse(claimed).trust_domain, 'example.org');

  late.resume();
  const r = await late.done;
  assert.notEqual(r.code, 0, `the late start must be refused: ${r.err}`);
  assert.match(r.err, /data dir \S+ belongs to trust domain "example\.org", not "example\.com"/);
  assert.equal(fs.readFileSync(path.join(dataDir, 'meshid-server.json'), 'utf8'), claimed, 'the marker is the serving trust domain\'s, unchanged');
});
