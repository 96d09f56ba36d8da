/**
 * `meshid-server backup --out DIR` against a real server process: the backup of a running server (entries, join
 * tokens, federation, a rotated and tainted CA) restores into a new data dir, copied or used as it is, and the
 * restored server serves the same bundle and entries to an agent attested before the backup. Directories it must not
 * write are refused with the code and words an operator acts on. Backups that CA changes race, or that a stop of the
 * server cuts short, are server-backup-races.test.ts's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { isMeshidError } from '../../src/common/errors.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { tempDir } from '../support/server-kit.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { backupCli } from '../support/server-restore-kit.js';
import { attestAgent, connectNode, nodeCall, type AgentIdentity } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';
import { damageRootPage } from '../support/damaged-page.js';

/** Every file and directory under `dir` with its mode, relative to it. */
function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (sub: string): void => {
    for (const e of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.join(sub, e.name);
      out[rel] = (fs.statSync(path.join(dir, rel)).mode & 0o777).toString(8);
      if (e.isDirectory()) walk(rel);
    }
  };
  walk('');
  return out;
}

/** What a restored server must serve as the live one did when the backup was taken. */
async function servedState(server: ServerProcess): Promise<{ bundle: string; entries: string; authorities: string; federation: unknown }> {
  const federation = JSON.parse((await server.cli(['federation', 'list', '--output', 'json'])).out) as { federation_relationships: unknown[] };
  return {
    bundle: (await server.cli(['bundle', 'show'])).out,
    entries: (await server.cli(['entry', 'show'])).out,
    authorities: (await server.cli(['ca', 'show'])).out,
    // The relationships and their bundles, as spire-server prints them (without the poll's progress, which a backup
    // does not keep).
    federation: federation.federation_relationships,
  };
}

async function renews(server: ServerProcess, roots: string, agent: AgentIdentity): Promise<void> {
  const client = connectNode(server, roots, agent);
  try {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const renewed = await nodeCall<{ svid_chain: Buffer[] }>(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
    assert.equal(parseCertificate(renewed.svid_chain[0]!).uriSans[0], agent.id, 'the agent attested before the backup renews');
  } finally {
    client.close();
  }
}

test('a backup of a running server with entries, tokens, federation and a rotated, tainted CA restores, copied or run in place', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const ok = async (args: string[]): Promise<string> => {
    const r = await live.cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    return r.out;
  };
  const roots = await ok(['bundle', 'show']);
  const partnerBundle = path.join(dir, 'partner.pem');
  fs.writeFileSync(partnerBundle, roots);
  await ok(['bundle', 'set', '--trust-domain', 'partner.org', '--path', partnerBundle]);
  await ok(['federation', 'create', '--trust-domain', 'partner.org', '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web']);
  await ok(['entry', 'create', '--spiffe-id', 'spiffe://example.org/web', '--parent-id', 'spiffe://example.org/host', '--selector', 'unix:uid:1000', '--federates-with', 'partner.org']);
  await ok(['entry', 'create', '--spiffe-id', 'spiffe://example.org/host', '--node', '--selector', 'meshid:datacenter:east']);
  const agent = await attestAgent(live, roots);
  await ok(['token', 'generate', '--datacenter', 'west']);
  await ok(['ca', 'rotate-root']);
  const west = /Authority ID\s+: (int-west-\S+)/.exec(await ok(['ca', 'show']))![1]!;
  await ok(['ca', 'taint', '--id', west]);
  const before = await servedState(live);
  assert.match(before.authorities, /State\s+: tainted/);
  assert.match(before.authorities, /State\s+: prepared/);

  const restoreDir = path.join(dir, 'restore');
  fs.mkdirSync(restoreDir);
  const out = path.join(restoreDir, 'data');
  const startedAt = Date.now();
  const backup = await backupCli(live, ['--out', out]);
  const endedAt = Date.now();
  assert.equal(backup.code, 0, backup.err);
  assert.equal(backup.err, '');
  // When the server took it (in whole seconds): within the command's run, not at a time read in another unit.
  const takenAt = Date.parse(/^Taken at +: (\S+)$/m.exec(backup.out)?.[1] ?? '');
  assert.ok(takenAt >= Math.floor(startedAt / 1000) * 1000 && takenAt <= endedAt, backup.out);
  const keyCount = (before.authorities.match(/Authority ID/g) ?? []).length;
  assert.match(backup.out, new RegExp(`^Backup written to ${out}\\n`));
  assert.match(backup.out, new RegExp(`^CA keys +: ${keyCount}$`, 'm'));
  assert.match(backup.out, /^Datastore +: \d+ bytes$/m);
  assert.match(backup.out, /^File +: datastore\.sqlite3 \(\d+ bytes\)$/m);
  assert.match(backup.out, /It holds the trust domain's CA private keys: keep it as private as the data dir/);
  // The restore it points to must also fit a server started with flags alone, which has no config file to name.
  assert.match(backup.out, new RegExp(`meshid-server restore --from ${out} --config <the server's config file>\` \\(or \`--data-dir <its data dir>\``));
  const written = modes(out);
  assert.deepEqual(
    Object.keys(written).filter((f) => !f.startsWith('ca/keys/')),
    ['ca', 'ca/keys', 'datastore.sqlite3', 'meshid-server.json', 'server-svid.json'],
    'no lock, -wal, -shm or first-setup marker',
  );
  assert.equal(Object.keys(written).filter((f) => f.startsWith('ca/keys/')).length, keyCount, 'one key per authority of the journal');
  assert.equal((fs.statSync(out).mode & 0o777).toString(8), '700');
  for (const [f, mode] of Object.entries(written)) assert.equal(mode, fs.statSync(path.join(out, f)).isDirectory() ? '700' : '600', f);
  assert.deepEqual(fs.readdirSync(restoreDir), ['data'], 'nothing staged is left beside it');
  // The live server goes on after the backup; what changes now is not in it.
  await ok(['entry', 'create', '--spiffe-id', 'spiffe://example.org/after', '--parent-id', 'spiffe://example.org/host', '--selector', 'unix:uid:1001']);
  assert.equal(await live.stop(), 0);

  // Restored by copying its files into an empty data dir.
  const copyDir = path.join(dir, 'copy');
  fs.mkdirSync(path.join(copyDir, 'data'), { recursive: true, mode: 0o700 });
  for (const f of fs.readdirSync(out)) fs.cpSync(path.join(out, f), path.join(copyDir, 'data', f), { recursive: true });
  const copied = await startServerProcess(copyDir);
  teardown(t).after(() => copied.stop());
  assert.deepEqual(await servedState(copied), before, 'the same bundle, entries, CA journal and federation');
  await renews(copied, roots, agent);
  assert.equal((await copied.cli(['token', 'revoke', '--all'])).out, 'Revoked 1 unused join token.\n', 'the unused token came back with it');
  assert.equal(await copied.stop(), 0);

  // And run on the backup directory itself (`run --data-dir DIR`).
  const inPlace = await startServerProcess(restoreDir);
  teardown(t).after(() => inPlace.stop());
  assert.deepEqual(await servedState(inPlace), before);
  await renews(inPlace, roots, agent);
});

test('a backup directory that is not empty, inside the data dir, relative, or under a missing parent is refused naming what to do', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-refused-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());

  const full = path.join(dir, 'full');
  fs.mkdirSync(full);
  fs.writeFileSync(path.join(full, 'other'), 'x');
  const notEmpty = await backupCli(live, ['--out', full]);
  assert.equal(notEmpty.code, 1);
  assert.equal(notEmpty.out, '');
  assert.match(notEmpty.err, new RegExp(`^Error: FailedPrecondition: the backup directory ${full} exists and is not empty \\(1 entry\\): a backup is written into a new or empty directory, never over another backup`));
  assert.deepEqual(fs.readdirSync(full), ['other'], 'left as it was');

  const inside = await backupCli(live, ['--out', path.join(live.dataDir, 'ca', 'backup')]);
  assert.equal(inside.code, 1);
  assert.match(inside.err, /^Error: InvalidArgument: the backup directory \S+\/data\/ca\/backup is inside the server's data dir \S+\/data: a backup must be kept apart/);
  const dataDirItself = await backupCli(live, ['--out', live.dataDir]);
  assert.match(dataDirItself.err, /^Error: InvalidArgument: .* is inside the server's data dir/);

  const orphan = await backupCli(live, ['--out', path.join(dir, 'no', 'such', 'backup')]);
  assert.equal(orphan.code, 1);
  assert.match(orphan.err, /^Error: FailedPrecondition: cannot write the backup to \S+\/no\/such\/backup: \S+\/no\/such does not exist; create it first/);

  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, '');
  assert.match((await backupCli(live, ['--out', file])).err, /^Error: FailedPrecondition: the backup directory \S+ exists and is not a directory/);

  // The server takes only absolute paths: its working directory is not the caller's.
  const client = new AdminClient(live.adminSocket);
  teardown(t).after(() => client.close());
  await assert.rejects(client.call('Backups', 'WriteBackup', { dir: 'relative/backup' }), (e: unknown) => {
    assert.ok(isMeshidError(e, 'invalid_argument'), String(e));
    assert.match(e.message, /^the backup directory "relative\/backup" is not an absolute path: the server writes the backup, and its working directory is not the caller's/);
    return true;
  });
  await assert.rejects(client.call('Backups', 'WriteBackup', { dir: '' }), (e: unknown) => isMeshidError(e, 'invalid_argument'));
  // Nor does the CLI guess one from where it runs: the server may see other files there (a container, PrivateTmp=).
  const cwd = path.join(dir, 'operator');
  fs.mkdirSync(path.join(cwd, 'empty'), { recursive: true });
  const relative = await backupCli(live, ['--out', 'empty'], cwd);
  assert.equal(relative.code, 1);
  assert.equal(relative.out, '');
  assert.equal(
    relative.err,
    "Error: InvalidArgument: flag --out empty is a relative path: the server writes the backup in its own view of the files, not this command's; " +
      `give an absolute path on the server's host (${path.join(cwd, 'empty')}, if the server sees this directory as this command does)\n`,
  );
  assert.deepEqual(fs.readdirSync(path.join(cwd, 'empty')), [], 'nothing written');
  // --out=~/x reaches the command unexpanded: it is named for what it is, not resolved to ./~/x.
  const tilde = await backupCli(live, ['--out=~/empty'], cwd);
  assert.equal(tilde.code, 1);
  assert.match(tilde.err, /^Error: InvalidArgument: flag --out ~\/empty starts with ~, which the shell did not expand \(it does not after --out=\): give the absolute path, e\.g\. --out \/\S+\/empty\n$/);
  // An empty directory given is used.
  const inEmpty = await backupCli(live, ['--out', path.join(cwd, 'empty')], cwd);
  assert.equal(inEmpty.code, 0, inEmpty.err);
  assert.match(inEmpty.out, new RegExp(`^Backup written to ${path.join(cwd, 'empty')}\\n`));
  assert.ok(fs.existsSync(path.join(cwd, 'empty', 'datastore.sqlite3')));
  assert.equal((fs.statSync(path.join(cwd, 'empty')).mode & 0o777).toString(8), '700', 'the directory given is made private');
  assert.deepEqual(fs.readdirSync(cwd), ['empty'], 'nothing staged is left beside it');
});

test('a backup of a live datastore SQLite finds damaged where serving has not read is refused naming the first problems, and leaves no backup, staging or scratch file behind', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-damaged-');
  teardown(t).after(cleanup);
  const first = await startServerProcess(dir);
  teardown(t).after(() => first.stop());
  assert.equal(await first.stop(), 0);
  // Bit rot where a start does not read: the entries table's root page (no entries, so its entry load does not reach it).
  damageRootPage(path.join(first.dataDir, 'datastore.sqlite3'), 'registration_entries', { checkpoint: true });
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const dataDirBefore = fs.readdirSync(live.dataDir).sort();

  const out = path.join(dir, 'backup');
  const r = await backupCli(live, ['--out', out]);
  assert.equal(r.code, 1, r.out);
  assert.equal(r.out, '');
  assert.match(
    r.err,
    new RegExp(`^Error: FailedPrecondition: the live datastore ${live.dataDir}/datastore\\.sqlite3 is damaged \\(SQLite's integrity check of its snapshot: .+\\), so no backup was written: .*meshid-server restore\\)\\n$`),
  );
  assert.equal(fs.existsSync(out), false, 'no backup directory');
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('backup')), [], 'no staging directory left');
  assert.deepEqual(fs.readdirSync(live.dataDir).sort(), dataDirBefore, 'no scratch snapshot left in the data dir');
  // An empty directory given is left empty.
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  assert.equal((await backupCli(live, ['--out', empty])).code, 1);
  assert.deepEqual(fs.readdirSync(empty), []);
  assert.equal((await live.cli(['healthcheck'])).code, 0, 'the server still serves');
});

test('a backup directory under a loop of symbolic links, or whose real path is longer than the system allows, is refused naming it, not as an internal error', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-unreachable-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());

  fs.symlinkSync(path.join(dir, 'loop'), path.join(dir, 'loop'));
  const looped = await backupCli(live, ['--out', path.join(dir, 'loop', 'backup')]);
  assert.equal(looped.code, 1);
  assert.equal(looped.out, '');
  assert.match(looped.err, new RegExp(`^Error: FailedPrecondition: cannot write the backup to ${dir}/loop/backup: ${dir}/loop cannot be followed \\(symbolic links in it loop`));

  // A real directory deeper than PATH_MAX (4,096 bytes) can be made and reached through short symbolic links, never by
  // its own path: the one given is refused for its length.
  const name = 'd'.repeat(200);
  const links: string[] = [];
  let real = dir;
  try {
    while (Buffer.byteLength(real) <= 4200) {
      const above = links.at(-1) ?? dir;
      fs.mkdirSync(path.join(above, name));
      real = path.join(real, name);
      links.push(path.join(dir, `l${links.length}`));
      fs.symlinkSync(path.join(above, name), links.at(-1)!);
    }
    const deep = await backupCli(live, ['--out', path.join(real, 'backup')]);
    assert.equal(deep.code, 1);
    assert.equal(deep.out, '');
    // Longer than a status message may be: the middle of the paths is left out, what to do is not.
    assert.match(
      deep.err,
      /^Error: InvalidArgument: cannot write the backup to \/\S+ … \(\d+ characters left out\) … \S+, with its symbolic links followed, is longer than the system's limit on paths; give a shorter one\n$/,
    );
    assert.deepEqual(fs.readdirSync(links.at(-1)!), [], 'nothing written');
  } finally {
    // From the deepest up, through the links: a recursive removal by the real path would hit the same limit.
    for (let i = links.length - 1; i >= 0; i--) fs.rmdirSync(path.join(i === 0 ? dir : links[i - 1]!, name));
  }
});

test('a backup into a file system the server cannot write to is refused naming it, and leaves nothing behind (real read-only tmpfs; root only)', async (t) => {
  const readOnly = mountTmpfs(t, '1m', { readOnly: true });
  const full = mountTmpfs(t, '64k');
  if (readOnly === undefined || full === undefined) return;
  const { dir, cleanup } = tempDir('meshid-backup-storage-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const refused = await backupCli(live, ['--out', path.join(readOnly, 'backup')]);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /^Error: FailedPrecondition: cannot write the backup into \S+: the file system is read-only; nothing of it was kept/);
  // The datastore alone is larger than 64 KiB.
  const noRoom = await backupCli(live, ['--out', path.join(full, 'backup')]);
  assert.equal(noRoom.code, 1);
  assert.match(noRoom.err, /^Error: ResourceExhausted: cannot write the backup into \S+: the disk is full; nothing of it was kept/);
  assert.deepEqual(fs.readdirSync(full), [], 'the partial backup was removed');
  // The server's operator is told at warn, with the errno and the path written; never what was being written.
  const warned = live.output().split('\n').filter((l) => l.includes('backup refused: no room to write it')).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(warned.length, 1, live.output());
  assert.equal(warned[0]!['level'], 40);
  assert.equal(warned[0]!['dir'], path.join(full, 'backup'));
  assert.equal(warned[0]!['errno'], 'ENOSPC');
  // Written through the staging directory's descriptor: named as the file of the backup, not as /proc/self/fd/N/….
  assert.equal(warned[0]!['file'], 'datastore.sqlite3', JSON.stringify(warned[0]));
  assert.equal(warned[0]!['path'], undefined);
  assert.match(String(warned[0]!['reason']), /the disk is full/);
});

test('a backup into an empty mount point is written on the mounted file system, made private (real tmpfs; root only)', async (t) => {
  const mounted = mountTmpfs(t, '4m');
  if (mounted === undefined) return;
  fs.chmodSync(mounted, 0o755);
  const { dir, cleanup } = tempDir('meshid-backup-mount-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const backup = await backupCli(live, ['--out', mounted]);
  assert.equal(backup.code, 0, backup.err);
  const device = fs.statSync(mounted).dev;
  assert.notEqual(device, fs.statSync(path.dirname(mounted)).dev, 'a mount point');
  assert.deepEqual(fs.readdirSync(mounted).sort(), ['ca', 'datastore.sqlite3', 'meshid-server.json', 'server-svid.json']);
  assert.equal(fs.statSync(path.join(mounted, 'datastore.sqlite3')).dev, device, 'on the mounted file system');
  assert.equal((fs.statSync(mounted).mode & 0o777).toString(8), '700', 'the keys are in it');
  assert.deepEqual(fs.readdirSync(path.dirname(mounted)).filter((f) => f.includes('.incomplete-')), [], 'nothing staged beside it');
});
