/**
 * An operator restoring meshid-server's data dir, on a real server process: a restore that does not match (the
 * datastore without its content beside the CA keys) is refused without touching the keys, and an agent whose SVID
 * came from an intermediate the restored datastore never knew is told so, not sent looking for a revoked root. The
 * join tokens a restore brings back are voided with `token revoke --all` as the README says, before agents can reach it.
 * The README's backup of a running server (keys, snapshot, keys again) restores, where one key copy after the snapshot
 * misses a key the server deleted meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { tempDir } from '../support/server-kit.js';
import { runRefused, startServerProcess } from '../support/server-process.js';
import { attestAgent, attestWithToken, connectNode, joinToken, nodeCall } from '../support/node-api-client.js';
import { damageRootPage } from '../support/damaged-page.js';
import { teardown } from '../support/teardown.js';

const DATASTORE_FILES = ['datastore.sqlite3', 'datastore.sqlite3-wal', 'datastore.sqlite3-shm'];

const keyFiles = (dataDir: string): Record<string, string> =>
  Object.fromEntries(fs.readdirSync(path.join(dataDir, 'ca', 'keys')).map((f) => [f, fs.readFileSync(path.join(dataDir, 'ca', 'keys', f), 'utf8')]));

test('a data dir whose datastore lost its content (copied without its -wal file) is refused at start, and its CA keys are kept', async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-');
  teardown(t).after(cleanup);
  const first = await startServerProcess(dir);
  const bundle = (await first.cli(['bundle', 'show'])).out;
  assert.equal(await first.stop(), 0);
  const dataDir = path.join(dir, 'data');
  const keysBefore = keyFiles(dataDir);
  // What a copy of datastore.sqlite3 alone taken while the server ran holds: a file without the commits in its WAL.
  const saved = path.join(dir, 'saved');
  fs.mkdirSync(saved);
  for (const f of DATASTORE_FILES) if (fs.existsSync(path.join(dataDir, f))) fs.renameSync(path.join(dataDir, f), path.join(saved, f));

  const refused = await runRefused([
    '--trust-domain', 'example.org', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0',
    '--admin-socket', path.join(dir, 'admin', 'admin.sock'), '--datacenter', 'east', '--datacenter', 'west',
  ]);
  assert.equal(refused.code, 1, refused.err);
  assert.match(refused.err, /the datastore holds no CA journal, but .*ca\/keys holds 4 CA key file\(s\) \(.*root-[0-9a-f]+.*\): the datastore is not the one these keys were made with/);
  assert.deepEqual(keyFiles(dataDir), keysBefore, 'no CA key was deleted, none made');

  // With the datastore that goes with them back, the server starts on the same trust domain.
  for (const f of DATASTORE_FILES) fs.rmSync(path.join(dataDir, f), { force: true });
  for (const f of fs.readdirSync(saved)) fs.renameSync(path.join(saved, f), path.join(dataDir, f));
  const again = await startServerProcess(dir);
  teardown(t).after(() => again.stop());
  assert.equal((await again.cli(['bundle', 'show'])).out, bundle, 'the same root is published');
});

test('an agent whose SVID is from an intermediate the restored server never held is told to re-attest, naming the restore, not a revoked root', async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-agent-');
  teardown(t).after(cleanup);
  const before = await startServerProcess(dir);
  const roots = (await before.cli(['bundle', 'show'])).out;
  assert.equal(await before.stop(), 0);
  const dataDir = path.join(dir, 'data');
  const backup = path.join(dir, 'backup');
  fs.cpSync(dataDir, backup, { recursive: true });

  // After the backup: the east intermediate is replaced and an agent attests under its successor.
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const east = /Authority ID\s+: (int-east-\S+)/.exec((await live.cli(['ca', 'show'])).out)![1]!;
  assert.equal((await live.cli(['ca', 'taint', '--id', east])).code, 0);
  const agent = await attestAgent(live, roots);
  assert.equal(await live.stop(), 0);

  fs.rmSync(dataDir, { recursive: true });
  fs.cpSync(backup, dataDir, { recursive: true });
  const restored = await startServerProcess(dir);
  teardown(t).after(() => restored.stop());
  const client = connectNode(restored, roots, agent);
  teardown(t).after(() => client.close());
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  await assert.rejects(nodeCall(client, 'Renew', { csr: await createCsr(privateKey, publicKey) }), (e: grpc.ServiceError) => {
    assert.equal(grpc.status[e.code], 'PERMISSION_DENIED', e.details);
    assert.match(e.details, /^must re-attest: agent \S+'s SVID was signed by an intermediate CA this server does not hold \(the server's data dir was replaced, or restored from a backup older than that CA/);
    return true;
  });
});

test('a join token used after the backup is usable again on the restored server until `token revoke --all`, as the README restores', async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-tokens-');
  teardown(t).after(cleanup);
  const before = await startServerProcess(dir);
  teardown(t).after(() => before.stop());
  const roots = (await before.cli(['bundle', 'show'])).out;
  const spent = await joinToken(before);
  const unused = await joinToken(before);
  assert.equal(await before.stop(), 0);
  const dataDir = path.join(dir, 'data');
  const backup = path.join(dir, 'backup');
  fs.cpSync(dataDir, backup, { recursive: true });

  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  await attestWithToken(live, roots, spent);
  assert.equal(await live.stop(), 0);

  fs.rmSync(dataDir, { recursive: true });
  fs.cpSync(backup, dataDir, { recursive: true });
  // The README's first start: the agent API on a loopback port no agent knows (startServerProcess binds 127.0.0.1:0).
  const voiding = await startServerProcess(dir);
  teardown(t).after(() => voiding.stop());
  const revoked = await voiding.cli(['token', 'revoke', '--all']);
  assert.equal(revoked.code, 0, revoked.err);
  assert.equal(revoked.out, 'Revoked 2 unused join tokens.\n', 'the spent token came back with the backup, and is voided with the other');
  assert.equal(await voiding.stop(), 0);

  const restored = await startServerProcess(dir);
  teardown(t).after(() => restored.stop());
  for (const token of [spent, unused]) {
    await assert.rejects(attestWithToken(restored, roots, token), (e: grpc.ServiceError) => {
      assert.equal(grpc.status[e.code], 'PERMISSION_DENIED', e.details);
      assert.match(e.details, /^join token is unknown, already used or revoked/);
      return true;
    });
  }
  assert.equal((await restored.cli(['token', 'revoke', '--all'])).out, 'Revoked 0 unused join tokens.\n');
});

test('the README\'s backup of a running server (keys, .backup snapshot, keys again) restores even when a key the snapshot names is deleted meanwhile', async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-live-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const roots = (await live.cli(['bundle', 'show'])).out;
  const root = /Authority ID\s+: (root-\S+)/.exec((await live.cli(['ca', 'show'])).out)![1]!;
  const agent = await attestAgent(live, roots);
  const dataDir = live.dataDir;
  const backup = path.join(dir, 'backup');
  const keysDir = (d: string): string => path.join(d, 'ca', 'keys');

  // The README's steps, in its order, while the server runs: ca/keys/, then the snapshot.
  fs.cpSync(keysDir(dataDir), keysDir(backup), { recursive: true });
  // better-sqlite3's backup() is SQLite's online backup API, as the sqlite3 CLI's .backup is (the CLI may be absent).
  const db = new Database(path.join(dataDir, 'datastore.sqlite3'), { readonly: true, fileMustExist: true });
  try {
    await db.backup(path.join(backup, 'datastore.sqlite3'));
  } finally {
    db.close();
  }
  // Between the snapshot and the second copy: the root the snapshot names is taint-replaced and revoked, so the server
  // deletes its key file (after the journal row, which the snapshot still holds). --force: the agent attested above
  // runs nowhere, so it would never move off the root; the restore brings that root back for it.
  assert.equal((await live.cli(['ca', 'taint', '--id', root])).code, 0);
  const revoked = await live.cli(['ca', 'revoke', '--id', root, '--force']);
  assert.equal(revoked.code, 0, revoked.err);
  const deleted = fs.readdirSync(keysDir(backup)).filter((f) => !fs.existsSync(path.join(keysDir(dataDir), f)));
  assert.equal(deleted.length, 1, 'the revoke deleted the root\'s key file, which the first copy holds');
  // What the old README did: one copy of ca/keys/, after the snapshot.
  const oneCopy = path.join(dir, 'one-copy');
  fs.cpSync(keysDir(dataDir), keysDir(oneCopy), { recursive: true });
  // The README's second copy, into the same place, and the config.
  fs.cpSync(keysDir(dataDir), keysDir(backup), { recursive: true });
  for (const d of [backup, oneCopy]) {
    fs.copyFileSync(path.join(dataDir, 'meshid-server.json'), path.join(d, 'meshid-server.json'));
    fs.copyFileSync(path.join(backup, 'datastore.sqlite3'), path.join(d, 'datastore.sqlite3'));
  }
  assert.equal(await live.stop(), 0);

  // The single copy lacks the revoked root's key, which the snapshot's journal names: the start is refused naming it.
  const oneCopyRestore = path.join(dir, 'restore-one-copy');
  fs.mkdirSync(oneCopyRestore);
  fs.cpSync(oneCopy, path.join(oneCopyRestore, 'data'), { recursive: true });
  const refused = await runRefused([
    '--trust-domain', 'example.org', '--data-dir', path.join(oneCopyRestore, 'data'), '--bind-address', '127.0.0.1:0',
    '--admin-socket', path.join(oneCopyRestore, 'admin', 'admin.sock'), '--datacenter', 'east', '--datacenter', 'west',
  ]);
  assert.equal(refused.code, 1, refused.err);
  assert.match(refused.err, new RegExp(`ca/keys/${deleted[0]} is missing`));

  // The README's backup restores into a fresh data dir: the root of the snapshot is served, and the agent attested
  // before it renews through it.
  const restoreDir = path.join(dir, 'restore');
  fs.mkdirSync(restoreDir);
  fs.cpSync(backup, path.join(restoreDir, 'data'), { recursive: true });
  const restored = await startServerProcess(restoreDir);
  teardown(t).after(() => restored.stop());
  assert.equal((await restored.cli(['bundle', 'show'])).out, roots, 'the bundle of the snapshot, the revoked root back in it');
  const client = connectNode(restored, roots, agent);
  teardown(t).after(() => client.close());
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const renewed = await nodeCall<{ svid_chain: Buffer[] }>(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
  assert.equal(parseCertificate(renewed.svid_chain[0]!).uriSans[0], agent.id, 'the agent renews on the restored server');
});

test('a datastore found damaged while a start loads its entries is refused naming the file and how to restore it, not as a running server\'s fault', async (t) => {
  const { dir, cleanup } = tempDir('meshid-damaged-start-');
  teardown(t).after(cleanup);
  const first = await startServerProcess(dir);
  const created = await first.cli(['entry', 'create', '--spiffe-id', 'spiffe://example.org/web', '--parent-id', 'spiffe://example.org/host', '--selector', 'unix:uid:1000']);
  assert.equal(created.code, 0, created.err);
  assert.equal(await first.stop(), 0);
  const dataDir = path.join(dir, 'data');
  const file = path.join(dataDir, 'datastore.sqlite3');
  // The start's entry load is the first to read the damaged page.
  damageRootPage(file, 'registration_entries', { checkpoint: true });

  const refused = await runRefused([
    '--trust-domain', 'example.org', '--data-dir', dataDir, '--bind-address', '127.0.0.1:0',
    '--admin-socket', path.join(dir, 'admin', 'admin.sock'), '--datacenter', 'east',
  ]);
  assert.equal(refused.code, 1, refused.err);
  assert.match(refused.err, new RegExp(`the datastore ${file} is damaged \\(.+\\): move ${dataDir} aside and restore a backup into it with \`meshid-server restore --from <backup dir> --data-dir ${dataDir}\``));
  assert.doesNotMatch(refused.err, /stop the server/);
});
