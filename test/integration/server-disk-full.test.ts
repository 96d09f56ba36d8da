/**
 * meshid-server on a data dir whose disk fills up: a real tmpfs (root only; CI runs as root), filled with fallocate.
 * Whatever fails must fail with a code the caller can act on, lose nothing, and leave nothing that later runs trip on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { tempDir } from '../support/server-kit.js';
import { runRefused, startServerProcess, type CliResult, type ServerProcess } from '../support/server-process.js';
import { connectNode, joinToken, nodeCall } from '../support/node-api-client.js';
import { fillDisk, mountTmpfs } from '../support/tmpfs.js';

const PAGE = 4096;
/** Whether the shared server runs on its own tmpfs: mounting needs root (CI runs as root) and a mount-capable host. */
let mounted = false;
const NO_MOUNT = 'needs root, to mount a small tmpfs';

let server: ServerProcess;
let dataDisk: string;
let rootsPem: string;
let cleanup: () => void = () => undefined;
const filler = (): string => path.join(dataDisk, 'filler');

/** Fills the data disk until `leave` bytes are free; with 0, until not one more byte fits. */
function fill(leave: number): void {
  if (leave === 0) return void fillDisk(dataDisk);
  const free = Number(fs.statfsSync(dataDisk).bavail) * Number(fs.statfsSync(dataDisk).bsize);
  const r = spawnSync('fallocate', ['-l', String(Math.max(PAGE, free - leave)), filler()]);
  assert.equal(r.status, 0, r.stderr?.toString());
}
const unfill = (): void => {
  for (const name of fs.readdirSync(dataDisk)) if (name.startsWith('filler')) fs.rmSync(path.join(dataDisk, name));
};

before(async () => {
  const t = tempDir('meshid-disk-full-');
  dataDisk = path.join(t.dir, 'data');
  fs.mkdirSync(dataDisk, { mode: 0o700 });
  mounted = process.geteuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'tmpfs', dataDisk]).status === 0;
  if (!mounted) {
    cleanup = t.cleanup;
    return;
  }
  cleanup = () => {
    spawnSync('umount', [dataDisk]);
    t.cleanup();
  };
  server = await startServerProcess(t.dir);
  rootsPem = (await server.cli(['bundle', 'show'])).out;
});

after(async () => {
  await server?.stop();
  cleanup();
});

test('Attest on a filling disk: refused with RESOURCE_EXHAUSTED and the token kept for the retry, at every fill level', async (t) => {
  if (!mounted) return t.skip(NO_MOUNT);
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  const client = connectNode(server, rootsPem);
  const agents = async (): Promise<number> => (JSON.parse((await server.cli(['agent', 'list', '--output', 'json'])).out) as { agents: unknown[] }).agents.length;
  try {
    let refused = 0;
    // Page by page: the old code consumed the token and registered the agent in two transactions, and a disk that
    // had room for the first but not the second cost the operator the token.
    for (let pages = 0; pages <= 8; pages++) {
      const token = await joinToken(server);
      const before = await agents();
      fill(pages * PAGE);
      let first: grpc.ServiceError | undefined;
      try {
        await nodeCall(client, 'Attest', { join_token: token, csr });
      } catch (err) {
        first = err as grpc.ServiceError;
      } finally {
        unfill();
      }
      if (first === undefined) continue;
      refused++;
      assert.equal(first.code, grpc.status.RESOURCE_EXHAUSTED, `${pages} pages free: ${first.details}`);
      assert.equal(await agents(), before, `${pages} pages free: no agent registered by the refused attempt`);
      const res = await nodeCall<{ spiffe_id: string }>(client, 'Attest', { join_token: token, csr });
      assert.match(res.spiffe_id, /\/meshid\/agent\/east\//, `${pages} pages free: the same token attests once there is room`);
    }
    assert.ok(refused > 0, 'a full disk refuses at least one attempt');
  } finally {
    client.close();
  }
});

test('a CA change on a full disk: RESOURCE_EXHAUSTED naming the key directory, no key or temp file left behind', async (t) => {
  if (!mounted) return t.skip(NO_MOUNT);
  const keysDir = path.join(server.dataDir, 'ca', 'keys');
  const keysBefore = fs.readdirSync(keysDir).sort();
  const intermediate = /int-west-[0-9a-f]+/.exec((await server.cli(['ca', 'show'])).out)![0];
  const refused = async (args: string[], message: RegExp): Promise<void> => {
    const r = await server.cli(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.err, message, args.join(' '));
  };
  fill(0);
  try {
    await refused(['ca', 'rotate-root'], new RegExp(`ResourceExhausted: cannot write a CA key to ${keysDir}: the disk is full`));
    // A taint may only promote the prepared intermediate: then the journal commit is what fails.
    await refused(['ca', 'taint', '--id', intermediate], /ResourceExhausted/);
  } finally {
    unfill();
  }
  assert.deepEqual(fs.readdirSync(keysDir).sort(), keysBefore, 'no key, no temp file');
  // Room for the new root's key but not for the journal commit: the key written must not stay behind.
  fill(4 * PAGE);
  try {
    await refused(['ca', 'rotate-root'], /ResourceExhausted: the datastore disk is full/);
  } finally {
    unfill();
  }
  assert.deepEqual(fs.readdirSync(keysDir).sort(), keysBefore, 'the key of the uncommitted root is gone');
  for (const args of [['ca', 'rotate-root'], ['ca', 'taint', '--id', intermediate]]) {
    const r = await server.cli(args);
    assert.equal(r.code, 0, `with room again, ${args.join(' ')} goes through: ${r.err}`);
  }
});

test('a backup whose datastore snapshot finds the data disk full: RESOURCE_EXHAUSTED naming the data dir, and the warn line names the scratch file there, not only the backup dir (which has room)', async (t) => {
  if (!mounted) return t.skip(NO_MOUNT);
  const { dir: roomy, cleanup: removeRoomy } = tempDir('meshid-disk-full-backup-');
  t.after(removeRoomy);
  const out = path.join(roomy, 'backup');
  const scratchFiles = (): string[] => fs.readdirSync(server.dataDir).filter((n) => n.startsWith('backup-snapshot.'));
  const warnedBefore = server.output().split('\n').filter((l) => l.includes('backup refused: no room to write it')).length;
  fill(0);
  let r: CliResult;
  try {
    r = await server.cli(['backup', '--out', out]);
  } finally {
    unfill();
  }
  assert.equal(r.code, 1, r.out);
  assert.match(r.err, new RegExp(`^Error: ResourceExhausted: cannot snapshot the datastore into the data dir ${server.dataDir}, [^\\n]*: the disk is full; nothing of the backup was kept`));
  const warned = server.output().split('\n').filter((l) => l.includes('backup refused: no room to write it')).slice(warnedBefore).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(warned.length, 1, server.output());
  assert.equal(warned[0]!['dir'], out);
  // The disk that is full is the data dir's: the line says which file there could not be written.
  assert.match(String(warned[0]!['path']), new RegExp(`^${server.dataDir}/backup-snapshot\\.[0-9a-f]+$`), JSON.stringify(warned[0]));
  assert.deepEqual(scratchFiles(), [], 'the scratch snapshot is removed');
});

test('a data dir on a file system remounted read-only: the server does not start, and says so naming the file', async (t) => {
  const disk = mountTmpfs(t, '16m');
  if (disk === undefined) return;
  const first = await startServerProcess(disk);
  await first.stop();
  assert.equal(spawnSync('mount', ['-o', 'remount,ro', disk]).status, 0, 'remount read-only');
  const admin = tempDir('meshid-disk-ro-admin-');
  t.after(admin.cleanup);
  const r = await runRefused([
    '--trust-domain', 'example.org', '--data-dir', first.dataDir, '--bind-address', '127.0.0.1:0',
    '--admin-socket', path.join(admin.dir, 'admin', 'admin.sock'), '--datacenter', 'east',
  ]);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, new RegExp(`cannot open the datastore ${first.dataDir}/datastore\\.sqlite3: the file system is read-only`));
});

test('a stale first-setup marker beside the journal, with ca/ read-only or the marker undeletable: the start says what failed and what to do', async (t) => {
  if (process.geteuid?.() !== 0) return t.skip('needs root, to bind-mount ca/ read-only and to chattr the marker');
  const { dir, cleanup } = tempDir('meshid-ca-ro-');
  const first = await startServerProcess(dir);
  assert.equal(await first.stop(), 0);
  const caDir = path.join(first.dataDir, 'ca');
  const marker = path.join(caDir, 'first-setup');
  // What a first start killed after its first commit but before removing the marker leaves (server-crash covers it).
  fs.writeFileSync(marker, 'a first CA setup is under way; removed by its first CA journal commit\n', { mode: 0o600 });
  const run = (): Promise<CliResult> =>
    runRefused([
      '--trust-domain', 'example.org', '--data-dir', first.dataDir, '--bind-address', '127.0.0.1:0',
      '--admin-socket', path.join(dir, 'admin', 'admin.sock'), '--datacenter', 'east', '--datacenter', 'west',
    ]);
  let bound = false;
  let immutable = false;
  try {
    // As root, modes stop nothing: a read-only bind mount of ca/ onto itself is what refuses the writes.
    bound = spawnSync('mount', ['--bind', caDir, caDir]).status === 0;
    if (!bound) return t.skip('this host cannot bind-mount');
    assert.equal(spawnSync('mount', ['-o', 'remount,bind,ro', caDir]).status, 0, 'remount ca/ read-only');
    const ro = await run();
    assert.equal(ro.code, 1, ro.err);
    assert.match(ro.err, new RegExp(`cannot use the CA directory ${caDir}: the file system is read-only\\. .*make it writable`));
    assert.equal(spawnSync('umount', [caDir]).status, 0);
    bound = false;

    // ca/ writable, the marker alone not removable (immutable: EPERM even for root).
    immutable = spawnSync('chattr', ['+i', marker]).status === 0;
    if (!immutable) return t.skip('this file system has no immutable attribute');
    const stuck = await run();
    assert.equal(stuck.code, 1, stuck.err);
    assert.match(stuck.err, new RegExp(`cannot remove the first-setup marker ${marker}: permission denied\\. .*remove it by hand`));
    spawnSync('chattr', ['-i', marker]);
    immutable = false;

    // Nothing else was at stake: with the marker removable again, the same data dir starts and drops it.
    const again = await startServerProcess(dir);
    assert.equal(await again.stop(), 0);
    assert.ok(!fs.existsSync(marker), 'the stale marker is gone');
  } finally {
    if (bound) spawnSync('umount', [caDir]);
    if (immutable) spawnSync('chattr', ['-i', marker]);
    cleanup();
  }
});
