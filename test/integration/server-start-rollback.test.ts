/**
 * A start that fails part-way is undone in reverse; here one undo step itself fails (stubbed: a health listener whose
 * close throws cannot be made to happen for real on one machine). The start must still report its own cause, undo the
 * other steps and release the data dir's lock, so the next start on the same dir works.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/common/log.js';
import { HttpHealthListener } from '../../src/common/health/http-health-listener.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { LEVEL, parseLogLines } from '../support/log-lines.js';
import { tempDir } from '../support/server-kit.js';
import { takenLoopbackPort } from '../support/taken-port.js';
import { teardown } from '../support/teardown.js';

test('a failed start whose undo step fails (stubbed health listener close) still reports its own cause, logs which step failed, undoes the rest and releases the data dir lock', async (t) => {
  const tmp = tempDir('meshid-server-rollback-');
  teardown(t).after(tmp.cleanup);
  const takenPort = await takenLoopbackPort(t);
  const settings = (bindAddress: string) =>
    compileServerConfig({
      trust_domain: 'example.org',
      data_dir: path.join(tmp.dir, 'data'),
      bind_address: bindAddress,
      admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
      health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 },
    });
  const raw: string[] = [];
  const log = createLogger({ name: 'meshid-server', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });

  // A data dir a start has claimed: a first start's ports are probed before anything (listen-probe.ts).
  await (await MeshidServer.start({ config: settings('127.0.0.1:0'), log })).stop();
  const close = HttpHealthListener.prototype.close;
  HttpHealthListener.prototype.close = async function (this: HttpHealthListener) {
    await close.call(this);
    throw new Error('stubbed: the health listener failed to close');
  };
  try {
    // The agent API's port is taken: the start fails after the health listener, the CA and the admin API are up.
    await assert.rejects(
      MeshidServer.start({ config: settings(`127.0.0.1:${takenPort}`), log }),
      /cannot listen on 127\.0\.0\.1:\d+ \(--bind-address, bind_address\): another process is listening/,
    );
  } finally {
    HttpHealthListener.prototype.close = close;
  }
  const undo = parseLogLines(raw.join('')).filter((l) => l.msg.startsWith('undoing a failed start'));
  assert.equal(undo.length, 1, 'the failed undo step is logged');
  assert.equal(undo[0]!.level, LEVEL.error);
  // Named, so the operator knows what was left half-closed.
  assert.equal(undo[0]!['step'], 'health listener');
  assert.equal(undo[0]!.msg, 'undoing a failed start: stopping the health listener failed; the remaining steps go on');

  // The lock was released and the datastore closed: the same data dir starts again in this process.
  const server = await MeshidServer.start({ config: settings('127.0.0.1:0'), log });
  teardown(t).after(() => server.stop());
  assert.ok(server.healthAddress() !== undefined, 'the second start serves');
});

test('a start whose datastore cannot be opened, with a health listener whose close fails (stubbed), still reports the datastore\'s error and releases the data dir lock', async (t) => {
  const tmp = tempDir('meshid-server-rollback-ds-');
  t.after(tmp.cleanup);
  const dataDir = path.join(tmp.dir, 'data');
  const config = compileServerConfig({
    trust_domain: 'example.org',
    data_dir: dataDir,
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
    health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 },
  });
  const raw: string[] = [];
  const log = createLogger({ name: 'meshid-server', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  // A first start claims the dir; then its datastore file is replaced by a directory, which SQLite cannot open.
  await (await MeshidServer.start({ config, log })).stop();
  const dbFile = path.join(dataDir, 'datastore.sqlite3');
  const aside = path.join(tmp.dir, 'aside');
  fs.mkdirSync(aside);
  const files = ['datastore.sqlite3', 'datastore.sqlite3-wal', 'datastore.sqlite3-shm'].filter((f) => fs.existsSync(path.join(dataDir, f)));
  for (const f of files) fs.renameSync(path.join(dataDir, f), path.join(aside, f));
  fs.mkdirSync(dbFile);

  const close = HttpHealthListener.prototype.close;
  HttpHealthListener.prototype.close = async function (this: HttpHealthListener) {
    await close.call(this);
    throw new Error('stubbed: the health listener failed to close');
  };
  let failure: unknown;
  try {
    await MeshidServer.start({ config, log }).catch((err: unknown) => (failure = err));
  } finally {
    HttpHealthListener.prototype.close = close;
  }
  assert.ok(failure instanceof Error, 'the start failed');
  assert.match(failure.message, /datastore\.sqlite3 is not a meshid datastore: it is not a regular file/, 'the datastore\'s error is reported, not the undo step\'s');
  const undo = parseLogLines(raw.join('')).filter((l) => l.msg.startsWith('undoing a failed start'));
  assert.equal(undo.length, 1, 'the failed undo step is logged');
  assert.equal(undo[0]!['step'], 'health listener', 'the failed undo step is named');

  // The lock was released: with the datastore file back, the same data dir starts again in this process.
  fs.rmdirSync(dbFile);
  for (const f of files) fs.renameSync(path.join(aside, f), path.join(dataDir, f));
  const server = await MeshidServer.start({ config, log });
  await server.stop();
});
