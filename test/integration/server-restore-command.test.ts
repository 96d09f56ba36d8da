/**
 * `meshid-server restore --from DIR --data-dir D` on real processes and files: a backup of a running server restores
 * into a new data dir that serves, with every join token of the backup voided before any server can use it; what it
 * must not restore from or into is refused naming the path and what to do, leaving everything as it was (above all a
 * crashed server's data dir, whose -wal file SQLite would replay over a copied datastore).
 * (server-restore-interrupted.test.ts has restores cut short: no room, killed at any step, signalled, raced.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { exportPkcs8Pem, generateKeyPair } from '../../src/common/x509/keys.js';
import { tempDir } from '../support/server-kit.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { serverPausedAt } from '../support/paused-process.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { attestAgent, attestWithToken } from '../support/node-api-client.js';
import { damageRootPage } from '../support/damaged-page.js';
import { backedUp, contents, refusedAsSpent, renews, restoreCli, restoreKilledAt, stagingLeft } from '../support/server-restore-kit.js';
import { teardown } from '../support/teardown.js';

test('backup, restore with --config, start: the restored server serves the backup, and no join token of the backup attests, used since or not', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-cmd-');
  teardown(t).after(cleanup);
  const { live, backup, roots, agent, tokens } = await backedUp(dir);
  teardown(t).after(() => live.stop());
  // Used after the backup: the restore brings it back unused.
  await attestWithToken(live, roots, tokens[0]!);
  assert.equal(await live.stop(), 0);

  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  const config = path.join(dir, 'server.json');
  fs.writeFileSync(config, JSON.stringify({ trust_domain: 'example.org', data_dir: path.join(elsewhere, 'data'), datacenters: ['east', 'west'] }));
  const restored = await restoreCli(['--from', backup, '--config', config]);
  assert.equal(restored.code, 0, restored.err);
  assert.match(restored.out, new RegExp(`^Restored ${backup} into ${path.join(elsewhere, 'data')}\\n`));
  assert.match(restored.out, /^CA keys +: 4$/m);
  assert.match(restored.out, /^File +: datastore\.sqlite3 \(\d+ bytes\)$/m);
  assert.match(restored.out, /^File +: meshid-server\.json \(\d+ bytes\)$/m);
  assert.match(restored.out, /^Voided 2 unused join tokens: generate new ones with `meshid-server token generate` for hosts still waiting\.$/m);
  assert.deepEqual(fs.readdirSync(elsewhere), ['data'], 'nothing but the data dir is left beside it');
  assert.equal(fs.statSync(path.join(elsewhere, 'data')).mode & 0o777, 0o700);

  // --data-dir wins over the config's data_dir, as run's flags win over its config: the restore lands where the flag
  // says, and the config's directory is not made.
  const flagNamed = path.join(dir, 'flag-named');
  const configNamed = path.join(dir, 'config-named');
  for (const d of [flagNamed, configNamed]) fs.mkdirSync(d);
  const both = path.join(dir, 'both.json');
  fs.writeFileSync(both, JSON.stringify({ trust_domain: 'example.org', data_dir: path.join(configNamed, 'data') }));
  const byFlag = await restoreCli(['--from', backup, '--config', both, '--data-dir', path.join(flagNamed, 'data'), '--output', 'json']);
  assert.equal(byFlag.code, 0, byFlag.err);
  // --output json: one document on stdout, naming what a script needs (where, from what, how many tokens voided).
  const json = JSON.parse(byFlag.out) as Record<string, unknown>;
  assert.deepEqual(
    [json['dir'], json['from'], json['trust_domain'], json['ca_keys'], json['voided_join_tokens']],
    [path.join(flagNamed, 'data'), backup, 'example.org', 4, 2],
  );
  assert.ok(fs.existsSync(path.join(flagNamed, 'data', 'datastore.sqlite3')), 'restored into the flag\'s data dir');
  assert.deepEqual(fs.readdirSync(configNamed), [], 'the config\'s data dir is not made');
  // A config template leaving data_dir and trust_domain "" for the command line, as run and validate take it.
  const template = path.join(dir, 'template.json');
  fs.writeFileSync(template, JSON.stringify({ trust_domain: '', data_dir: '' }));
  const fromTemplate = await restoreCli(['--from', backup, '--config', template, '--data-dir', path.join(flagNamed, 'data2'), '--trust-domain', 'example.org']);
  assert.equal(fromTemplate.code, 0, fromTemplate.err);
  assert.ok(fs.existsSync(path.join(flagNamed, 'data2', 'datastore.sqlite3')));

  const server = await startServerProcess(elsewhere);
  teardown(t).after(() => server.stop());
  assert.equal((await server.cli(['bundle', 'show'])).out, roots, 'the backup\'s trust domain, same root');
  for (const token of tokens) await refusedAsSpent(server, roots, token);
  await renews(server, roots, agent);
  await attestAgent(server, roots);
});

test('restore refuses, naming the path and what to do, and changes nothing: a running server\'s data dir, a non-empty one, an incomplete backup, another trust domain, directories others can change', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-refused-');
  teardown(t).after(cleanup);
  const { live, backup } = await backedUp(dir);
  teardown(t).after(() => live.stop());
  const newDataDir = path.join(dir, 'new', 'data');
  fs.mkdirSync(path.dirname(newDataDir));
  const refused = async (args: string[], message: RegExp, dataDir = newDataDir): Promise<void> => {
    const before = fs.existsSync(dataDir) ? contents(dataDir) : undefined;
    const r = await restoreCli(['--data-dir', dataDir, ...args]);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.out}`);
    assert.equal(r.out, '');
    assert.match(r.err, message);
    assert.deepEqual(fs.existsSync(dataDir) ? contents(dataDir) : undefined, before, 'the data dir is as it was');
    assert.deepEqual(stagingLeft(path.dirname(dataDir)), [], 'no staging directory left');
  };

  await refused(['--from', backup], /cannot restore into \S+\/data: a meshid-server is running on it \(it holds \S+\/data\/server\.lock\); stop it first/, live.dataDir);
  assert.equal(await live.stop(), 0);
  const d = live.dataDir;
  await refused(['--from', backup], new RegExp(`cannot restore into ${d}: it is not empty \\(\\d+ entries\\); .*move it aside \\(mv ${d} ${d}\\.before-restore\\)`), d);
  // A directory named as the marker's temp file is someone's, not a killed first start's: not empty (before, taken as
  // empty, and the restore failed after the whole copy, unable to remove it).
  const namedLikeTemp = path.join(dir, 'named-like-temp');
  fs.mkdirSync(path.join(namedLikeTemp, '.meshid-server.json.0123abcd.tmp'), { recursive: true });
  await refused(['--from', backup], /cannot restore into \S+\/named-like-temp: it is not empty \(1 entry\)/, namedLikeTemp);

  await refused(['--from', backup, '--trust-domain', 'other.org'], /the backup \S+ is of trust domain "example\.org", not "other\.org"/);
  const config = path.join(dir, 'other.json');
  fs.writeFileSync(config, JSON.stringify({ trust_domain: 'other.org' }));
  await refused(['--from', backup, '--config', config], /is of trust domain "example\.org", not "other\.org" \(\S+other\.json\)/);
  // --trust-domain wins over the config's, as run's flags do: a config naming the backup's does not let it through.
  fs.writeFileSync(config, JSON.stringify({ trust_domain: 'example.org' }));
  await refused(['--from', backup, '--config', config, '--trust-domain', 'other.org'], /is of trust domain "example\.org", not "other\.org": /);
  // A trust domain no server could run with is refused as run refuses it, naming where it was set.
  await refused(['--from', backup, '--trust-domain', 'example..org'], /^Error: InvalidArgument: --trust-domain: trust domain "example\.\.org" has an empty label /);
  fs.writeFileSync(config, JSON.stringify({ trust_domain: 'spiffe://example.org/path' }));
  await refused(['--from', backup, '--config', config], /^Error: InvalidArgument: trust_domain in \S+other\.json: "spiffe:\/\/example\.org\/path" is a SPIFFE ID with a path/);

  const variant = (name: string, change: (copy: string) => void): string => {
    const copy = path.join(dir, name);
    fs.cpSync(backup, copy, { recursive: true });
    change(copy);
    return copy;
  };
  const noMarker = variant('no-marker', (c) => fs.rmSync(path.join(c, 'meshid-server.json')));
  await refused(['--from', noMarker], /the backup directory \S+no-marker has no meshid-server\.json, which a backup writes last: it is not a complete backup/);
  const leftover = variant('killed', (c) => {
    fs.rmSync(path.join(c, 'meshid-server.json'));
    fs.mkdirSync(path.join(c, 'killed.incomplete-0123456789ab'));
  });
  await refused(['--from', leftover], /holds what an interrupted backup left \(killed\.incomplete-0123456789ab\)/);
  const staging = variant('b.incomplete-0123456789ab', () => undefined);
  await refused(['--from', staging], /is the staging directory of an interrupted backup/);
  const noDatastore = variant('no-datastore', (c) => fs.rmSync(path.join(c, 'datastore.sqlite3')));
  await refused(['--from', noDatastore], /the backup directory \S+no-datastore has no datastore\.sqlite3/);
  const noRootKey = variant('no-root-key', (c) => {
    const keys = path.join(c, 'ca', 'keys');
    fs.rmSync(path.join(keys, fs.readdirSync(keys).find((f) => f.startsWith('root-'))!));
  });
  await refused(['--from', noRootKey], /CA key file \S+no-root-key\/ca\/keys\/root-[0-9a-f]+\.pem, which the backup's CA journal names \(root root-[0-9a-f]+\), is missing/);
  // A key that is there but is not the journal's is refused as a start would refuse it, before anything is put in place.
  const otherRootKey = variant('other-root-key', (c) => {
    const keys = path.join(c, 'ca', 'keys');
    const rootKey = path.join(keys, fs.readdirSync(keys).find((f) => f.startsWith('root-'))!);
    fs.writeFileSync(rootKey, exportPkcs8Pem(generateKeyPair('ec-p256').privateKey));
  });
  await refused(['--from', otherRootKey], /CA key file \S+other-root-key\/ca\/keys\/root-[0-9a-f]+\.pem does not match the root certificate root-[0-9a-f]+: the backup is damaged; restore another one/);
  const corruptKey = variant('corrupt-key', (c) => {
    const keys = path.join(c, 'ca', 'keys');
    fs.writeFileSync(path.join(keys, fs.readdirSync(keys).find((f) => f.startsWith('int-'))!), 'not a key');
  });
  await refused(['--from', corruptKey], /CA key file \S+corrupt-key\/ca\/keys\/int-\S+\.pem is corrupt/);
  await refused(['--from', path.join(dir, 'absent')], /the backup directory \S+absent does not exist/);
  // A path the process cannot follow is the operator's to change, not an internal error: named, as backup --out names it.
  fs.symlinkSync('loop', path.join(dir, 'loop'));
  const looped = await restoreCli(['--data-dir', path.join(dir, 'loop', 'data'), '--from', backup]);
  assert.equal(looped.code, 1);
  assert.match(looped.err, new RegExp(`cannot restore into ${dir}/loop/data: ${dir}/loop cannot be followed \\(symbolic links in it loop`));
  assert.deepEqual(stagingLeft(dir), [], 'no staging directory left');

  // Writable by others without the sticky bit: they could swap the keys, in the backup or in the data dir.
  const open = path.join(dir, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  fs.cpSync(backup, path.join(open, 'backup'), { recursive: true });
  await refused(['--from', path.join(open, 'backup')], new RegExp(`backup directory: ${open} is writable by other users \\(mode 777\\)`));
  await refused(['--from', backup], new RegExp(`data dir: ${open} is writable by other users \\(mode 777\\)`), path.join(open, 'data'));
  assert.equal(fs.existsSync(newDataDir), false, 'no data dir was made by any refusal');
});

test('a backup whose datastore SQLite finds damaged where a restore does not read (the entries table) is refused naming it, not restored as if whole', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-damaged-');
  teardown(t).after(cleanup);
  const { live, backup } = await backedUp(dir);
  teardown(t).after(() => live.stop());
  assert.equal(await live.stop(), 0);
  const damaged = path.join(dir, 'damaged');
  fs.cpSync(backup, damaged, { recursive: true });
  // Bit rot on the backup's medium, or a copy whose middle never reached it. This backup holds no entries, so a start
  // would not read that page either (its entry load goes through the empty id index): the first entry written would,
  // long after the restore was trusted.
  const file = path.join(damaged, 'datastore.sqlite3');
  damageRootPage(file, 'registration_entries');
  const dataDir = path.join(dir, 'restored');
  const r = await restoreCli(['--from', damaged, '--data-dir', dataDir]);
  assert.equal(r.code, 1, r.out);
  assert.equal(r.out, '');
  assert.match(r.err, new RegExp(`^Error: FailedPrecondition: cannot restore ${damaged}: the datastore ${file} is damaged \\(SQLite's integrity check: .+\\): restore another backup\\n$`));
  assert.equal(fs.existsSync(dataDir), false, 'no data dir was made');
  assert.deepEqual(stagingLeft(dir), [], 'no staging directory left');
});

test('a data dir a crashed server left with its datastore.sqlite3-wal is refused, naming the -wal; moved aside as told, the restore restores the backup', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-wal-');
  teardown(t).after(cleanup);
  const { live, backup, roots, tokens } = await backedUp(dir);
  teardown(t).after(() => live.stop());
  // After the backup, in the live datastore's WAL only: the server is killed before any checkpoint moves it.
  const after = await live.cli(['entry', 'create', '--spiffe-id', 'spiffe://example.org/after', '--parent-id', 'spiffe://example.org/host', '--selector', 'unix:uid:1']);
  assert.equal(after.code, 0, after.err);
  await live.stop('SIGKILL');
  const d = live.dataDir;
  assert.ok(fs.statSync(path.join(d, 'datastore.sqlite3-wal')).size > 0, 'the crash left the datastore\'s -wal file');
  const crashed = contents(d);

  const r = await restoreCli(['--from', backup, '--data-dir', d]);
  assert.equal(r.code, 1, r.out);
  assert.match(r.err, new RegExp(`cannot restore into ${d}: it is not empty \\(\\d+ entries, among them datastore\\.sqlite3-wal, which SQLite would replay over the restored datastore\\); .*\\(mv ${d} ${d}\\.before-restore\\)`));
  assert.deepEqual(contents(d), crashed, 'the crashed data dir is left as it was');

  fs.renameSync(d, `${d}.before-restore`);
  const again = await restoreCli(['--from', backup, '--data-dir', d]);
  assert.equal(again.code, 0, again.err);
  const server = await startServerProcess(dir);
  teardown(t).after(() => server.stop());
  assert.equal((await server.cli(['bundle', 'show'])).out, roots);
  assert.doesNotMatch((await server.cli(['entry', 'show'])).out, /example\.org\/after/, 'the backup\'s state, not the crashed one\'s');
  for (const token of tokens) await refusedAsSpent(server, roots, token);
  assert.equal(await server.stop(), 0);

  // The crashed data dir itself, server stopped, restores with its own -wal: the commits only that file held are kept.
  const copy = path.join(dir, 'copy');
  fs.mkdirSync(copy);
  const fromCrashed = await restoreCli(['--from', `${d}.before-restore`, '--data-dir', path.join(copy, 'data')]);
  assert.equal(fromCrashed.code, 0, fromCrashed.err);
  assert.match(fromCrashed.out, /^File +: datastore\.sqlite3 /m);
  assert.doesNotMatch(fromCrashed.out, /^File +: \S*(-wal|-shm|server\.lock) /m, 'checkpointed into the one file; no lock listed');
  const fromCrash = await startServerProcess(copy);
  teardown(t).after(() => fromCrash.stop());
  assert.match((await fromCrash.cli(['entry', 'show'])).out, /example\.org\/after/, 'the entry only the -wal held');
});

test('a data dir a first start left before its marker (its server.lock, the marker\'s temp file) is refused while that start holds the lock, and restored into once it is killed, as run would take it', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-first-start-');
  teardown(t).after(cleanup);
  const { live, backup, roots, tokens } = await backedUp(dir);
  assert.equal(await live.stop(), 0);
  const where = path.join(dir, 'first');
  fs.mkdirSync(where);
  const d = path.join(where, 'data');

  // A real first start, stopped with the lock taken and the marker's temp file written, about to rename it into place.
  const first = serverPausedAt(
    ['run', '--trust-domain', 'example.org', '--data-dir', d, '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(where, 'admin', 'admin.sock')],
    ['data-dir-marker'],
  );
  teardown(t).after(() => first.kill('SIGKILL'));
  await first.paused('data-dir-marker');
  const left = fs.readdirSync(d).sort();
  assert.equal(left.length, 2, left.join(', '));
  assert.match(left[0]!, /^\.meshid-server\.json\.[0-9a-f]+\.tmp$/);
  assert.equal(left[1], 'server.lock');
  const before = contents(d);
  const held = await restoreCli(['--from', backup, '--data-dir', d]);
  assert.equal(held.code, 1, held.out);
  assert.match(held.err, new RegExp(`cannot restore into ${d}: a meshid-server is running on it \\(it holds ${d}/server\\.lock\\); stop it first`));
  assert.deepEqual(contents(d), before, 'the starting server\'s dir is left as it was');
  assert.deepEqual(stagingLeft(where), [], 'no staging directory left');

  // Killed there: what it left is no server's any more, and run would take the dir as empty; so does restore.
  first.kill('SIGKILL');
  await first.done;
  assert.deepEqual(fs.readdirSync(d).sort(), left);
  const restored = await restoreCli(['--from', backup, '--data-dir', d]);
  assert.equal(restored.code, 0, restored.err);
  assert.deepEqual(stagingLeft(where), [], 'no staging directory left');
  assert.ok(!fs.readdirSync(d).some((n) => n.endsWith('.tmp')), 'the killed start\'s temp file went with its dir');
  const server = await startServerProcess(where);
  teardown(t).after(() => server.stop());
  assert.equal((await server.cli(['bundle', 'show'])).out, roots, 'the backup\'s CA serves');
  for (const token of tokens) await refusedAsSpent(server, roots, token);
  assert.equal(await server.stop(), 0);
});

test('in a directory others may add to (sticky, as /tmp), what another user named like a staging directory is left alone: their directory, a symbolic link to a running server\'s data dir', { timeout: 120_000 }, async (t) => {
  // chown to another uid stands in for that user making them (needs root).
  if (process.geteuid?.() !== 0) return t.skip('needs root, to give files to another user');
  const { dir, cleanup } = tempDir('meshid-restore-shared-');
  teardown(t).after(cleanup);
  const { live, backup } = await backedUp(dir);
  teardown(t).after(() => live.stop());
  const shared = path.join(dir, 'shared');
  fs.mkdirSync(shared);
  fs.chmodSync(shared, 0o1777);
  const nobody = 65534;
  const theirs = path.join(shared, 'data.restoring-000000000000');
  fs.mkdirSync(theirs);
  fs.writeFileSync(path.join(theirs, 'notes'), 'theirs');
  fs.chownSync(theirs, nobody, nobody);
  fs.chownSync(path.join(theirs, 'notes'), nobody, nobody);
  const link = path.join(shared, 'data.restoring-00000000000a');
  fs.symlinkSync(live.dataDir, link);
  fs.lchownSync(link, nobody, nobody);

  const r = await restoreCli(['--from', backup, '--data-dir', path.join(shared, 'data')]);
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.err, /Removed/);
  // Said, since it may be what a restore run as that user left, with a copy of the CA keys; the link is no directory.
  assert.match(r.err, new RegExp(`^Left ${theirs} alone: .* owned by uid ${nobody}, not this user\\. If a restore run as that user left it, it holds a copy of the CA keys: have that user remove it\\.$`, 'm'));
  assert.doesNotMatch(r.err, /00000000000a/);
  assert.equal(fs.readFileSync(path.join(theirs, 'notes'), 'utf8'), 'theirs', 'another user\'s directory is not a leftover of this restore');
  assert.equal(fs.readlinkSync(link), live.dataDir, 'nor is a symbolic link, which is never followed');
  assert.deepEqual(fs.readdirSync(shared).sort(), ['data', 'data.restoring-000000000000', 'data.restoring-00000000000a']);
});

test('a data dir that is a mount point is refused before anything is copied, naming what to do (real tmpfs; root only)', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-mount-');
  teardown(t).after(cleanup);
  const mounted = mountTmpfs(t, '1m');
  if (mounted === undefined) return;
  const { live, backup } = await backedUp(dir);
  assert.equal(await live.stop(), 0);

  // Killed at the first file copied: a refusal made only at the rename, after the copy, never gets to say it.
  const r = await restoreKilledAt(['--from', backup, '--data-dir', mounted], 'restore-files:0');
  assert.equal(r.signal, null, 'refused before the first copy');
  assert.match(r.output, new RegExp(`cannot restore into ${mounted}: it is a mount point, which a rename cannot replace; restore into a new directory under it \\(e\\.g\\. ${mounted}/server\\)`));
  assert.deepEqual(fs.readdirSync(mounted), []);
  assert.deepEqual(stagingLeft(path.dirname(mounted)).filter((n) => n.startsWith(`${path.basename(mounted)}.`)), []);
});

test('revisions taken after a restore differ from every one the old server took after the backup, which agents offline across the restore may hold', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-revisions-');
  teardown(t).after(cleanup);
  const { live, backup } = await backedUp(dir);
  teardown(t).after(() => live.stop());
  const createEntries = async (server: ServerProcess, prefix: string): Promise<void> => {
    for (let i = 0; i < 3; i++) {
      const r = await server.cli(['entry', 'create', '--spiffe-id', `spiffe://example.org/${prefix}-${i}`, '--parent-id', 'spiffe://example.org/host', '--selector', `unix:uid:${1000 + i}`]);
      assert.equal(r.code, 0, r.err);
    }
  };
  const revisions = (dataDir: string, prefix: string): number[] => {
    const db = new Database(path.join(dataDir, 'datastore.sqlite3'), { readonly: true });
    try {
      const rows = db.prepare('SELECT revision FROM registration_entries WHERE spiffe_id LIKE ?').all(`spiffe://example.org/${prefix}-%`) as Array<{ revision: number }>;
      return rows.map((r) => r.revision);
    } finally {
      db.close();
    }
  };
  // Taken by the old server after the backup: an agent synced then holds its entries at these revisions.
  await createEntries(live, 'after-backup');
  assert.equal(await live.stop(), 0);
  const takenBefore = revisions(live.dataDir, 'after-backup');
  assert.equal(takenBefore.length, 3);

  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  const restored = await restoreCli(['--from', backup, '--data-dir', path.join(elsewhere, 'data')]);
  assert.equal(restored.code, 0, restored.err);
  const server = await startServerProcess(elsewhere);
  teardown(t).after(() => server.stop());
  await createEntries(server, 'after-restore');
  assert.equal(await server.stop(), 0);
  const takenAfter = revisions(server.dataDir, 'after-restore');
  assert.equal(takenAfter.length, 3);
  for (const r of takenAfter) assert.ok(!takenBefore.includes(r), `revision ${r}, taken after the restore, was taken before it too (${takenBefore.join(', ')})`);
  assert.ok(Math.min(...takenAfter) > Math.max(...takenBefore), 'revisions still only grow');
});
