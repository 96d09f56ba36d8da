import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensurePrivateDir } from '../../../src/common/atomic-file.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { assertSafeDirectory } from '../../../src/common/safe-directory.js';

const NOBODY = 65534;
const asRoot = { skip: process.geteuid?.() !== 0 ? 'needs root, to give files to another uid' : false };
const refused = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'failed_precondition') && pattern.test(err.message);

function tempRoot(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-safe-dir-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a directory only root or we can change is accepted, existing or not yet created', (t) => {
  const root = tempRoot(t);
  assertSafeDirectory(root, 'test');
  assertSafeDirectory(path.join(root, 'not', 'yet'), 'test');
  const sticky = path.join(root, 'shared');
  fs.mkdirSync(sticky);
  fs.chmodSync(sticky, 0o1777);
  assertSafeDirectory(path.join(sticky, 'ours'), 'test');
});

test('a directory others may write without the sticky bit is refused, and so is everything below it', (t) => {
  const root = tempRoot(t);
  const open = path.join(root, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  assert.throws(() => assertSafeDirectory(open, 'workload socket directory'), refused(/workload socket directory: .*open is writable by other users \(mode 777\) without the sticky bit/));
  assert.throws(() => assertSafeDirectory(path.join(open, 'meshid', 'public'), 'test'), refused(/open is writable by other users/));
  assert.throws(() => ensurePrivateDir(path.join(open, 'keys')), refused(/open is writable/));
  assert.equal(fs.existsSync(path.join(open, 'keys')), false, 'refused before anything was created');
  // Group write alone is let through (user private groups).
  const groupWritable = path.join(root, 'group');
  fs.mkdirSync(groupWritable);
  fs.chmodSync(groupWritable, 0o775);
  assertSafeDirectory(path.join(groupWritable, 'sock'), 'test');
});

test('a directory another user owns is refused (the pre-created /tmp/meshid-agent attack)', asRoot, (t) => {
  const root = tempRoot(t);
  const planted = path.join(root, 'meshid-agent');
  fs.mkdirSync(planted, { mode: 0o755 });
  fs.chownSync(planted, NOBODY, NOBODY);
  assert.throws(() => assertSafeDirectory(path.join(planted, 'public'), 'test'), refused(/meshid-agent belongs to uid 65534/));
  // Run as root, the remedy names root once ("owned by root or by uid 0" said it twice).
  assert.throws(() => assertSafeDirectory(planted, 'test'), refused(/use a directory owned by root, or remove .*meshid-agent and let meshid create it$/));
});

test("run as another user, a directory of that user's is accepted, and the remedy for another's names that uid beside root (a process run as uid 65534)", asRoot, (t) => {
  const root = tempRoot(t);
  fs.chmodSync(root, 0o755);
  const ours = path.join(root, 'ours');
  const planted = path.join(root, 'meshid-agent');
  fs.mkdirSync(ours, { mode: 0o755 });
  fs.chownSync(ours, NOBODY, NOBODY);
  fs.mkdirSync(planted, { mode: 0o755 });
  fs.chownSync(planted, NOBODY - 1, NOBODY - 1);
  const moduleUrl = new URL('../../../src/common/safe-directory.js', import.meta.url).href;
  const check = (dir: string): string =>
    `try { m.assertSafeDirectory(${JSON.stringify(dir)}, 'test'); console.log('accepted'); } catch (err) { console.log(err.message); }`;
  const script = `import(${JSON.stringify(moduleUrl)}).then((m) => { ${check(path.join(ours, 'sock'))} ${check(planted)} })`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: NOBODY, gid: NOBODY, encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  const [oursAnswer, plantedAnswer] = child.stdout.trim().split('\n');
  assert.equal(oursAnswer, 'accepted');
  assert.match(plantedAnswer!, /belongs to uid 65533, .*; use a directory owned by root or by uid 65534, or remove .*meshid-agent and let meshid create it$/);
});

test('a symlink is followed and its target checked; a symlink another user owns is refused', asRoot, (t) => {
  const root = tempRoot(t);
  const good = path.join(root, 'good');
  fs.mkdirSync(good);
  fs.symlinkSync(good, path.join(root, 'link-good'));
  assertSafeDirectory(path.join(root, 'link-good', 'sock'), 'test');

  const open = path.join(root, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  fs.symlinkSync(open, path.join(root, 'link-open'));
  assert.throws(() => assertSafeDirectory(path.join(root, 'link-open'), 'test'), refused(/open is writable by other users/));

  fs.symlinkSync(good, path.join(root, 'link-theirs'));
  fs.lchownSync(path.join(root, 'link-theirs'), NOBODY, NOBODY);
  assert.throws(() => assertSafeDirectory(path.join(root, 'link-theirs'), 'test'), refused(/link-theirs belongs to uid 65534/));
});

test('an existing directory is made private only when it is meshid\'s to change: never a shared one like /tmp', (t) => {
  const root = tempRoot(t);
  const modeOf = (dir: string): string => (fs.statSync(dir).mode & 0o7777).toString(8);
  const shared = path.join(root, 'tmp');
  fs.mkdirSync(shared);
  fs.chmodSync(shared, 0o1777);
  assert.throws(() => ensurePrivateDir(shared, { purpose: 'admin socket directory', adoptExisting: false }), refused(/^admin socket directory: .*tmp is shared with other users \(mode 1777\); name a directory of meshid's own under it/));
  assert.throws(() => ensurePrivateDir(shared), refused(/is shared with other users/), 'not as a data dir either');
  assert.equal(modeOf(shared), '1777', 'left as it was');
  ensurePrivateDir(path.join(shared, 'meshid'));
  assert.equal(modeOf(path.join(shared, 'meshid')), '700', 'a directory of its own under it is fine');

  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  fs.chmodSync(home, 0o755);
  assert.throws(() => ensurePrivateDir(home, { purpose: 'admin socket directory', adoptExisting: false }), refused(/^admin socket directory: other users can enter .*home \(mode 755\); chmod 700 .*home, or name a directory that does not exist yet/));
  assert.equal(modeOf(home), '755', 'a directory named only to hold a socket is not chmodded');
  fs.chmodSync(home, 0o700);
  ensurePrivateDir(home, { adoptExisting: false });

  const dataDir = path.join(root, 'data');
  fs.mkdirSync(dataDir);
  fs.chmodSync(dataDir, 0o755);
  ensurePrivateDir(dataDir, { purpose: 'data directory' });
  assert.equal(modeOf(dataDir), '700', 'a data dir is meshid\'s: made private');
});
