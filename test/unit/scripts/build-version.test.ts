/**
 * scripts/build-version.mjs, the version scripts/bundle.mjs builds into the executables: run on stand-in package
 * trees (a package.json, with or without a git repository of its own).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../../src/common/paths.js';
import { tempDir } from '../../support/server-kit.js';

const { buildVersion } = (await import(pathToFileURL(path.join(packageRoot, 'scripts', 'build-version.mjs')).href)) as {
  buildVersion: (root: string) => string;
};

const git = (dir: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args], { cwd: dir, encoding: 'utf8' }).trim();

function packageTree(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'meshid', version: '1.2.3' }));
}

function commit(dir: string): string {
  git(dir, 'init', '-q');
  git(dir, 'add', 'package.json');
  git(dir, 'commit', '-q', '-m', 'stand-in');
  return git(dir, 'rev-parse', '--short', 'HEAD');
}

test('outside a git checkout (a tarball): the package version alone', (t) => {
  const { dir, cleanup } = tempDir('meshid-build-version-');
  t.after(cleanup);
  packageTree(dir);
  assert.equal(buildVersion(dir), '1.2.3');
});

test('in its own git checkout: the short commit as semver build metadata, -dirty once a tracked file changes, not for an untracked one', (t) => {
  const { dir, cleanup } = tempDir('meshid-build-version-');
  t.after(cleanup);
  packageTree(dir);
  const short = commit(dir);
  assert.match(short, /^[0-9a-f]{7,}$/);
  assert.equal(buildVersion(dir), `1.2.3+${short}`);
  fs.writeFileSync(path.join(dir, 'scratch.txt'), 'not part of the build');
  assert.equal(buildVersion(dir), `1.2.3+${short}`);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'meshid', version: '1.2.3', description: 'edited' }));
  assert.equal(buildVersion(dir), `1.2.3+${short}-dirty`);
});

test('unpacked inside another project\'s git checkout (its node_modules): the package version, not that project\'s commit', (t) => {
  const { dir, cleanup } = tempDir('meshid-build-version-');
  t.after(cleanup);
  packageTree(dir);
  commit(dir);
  const nested = path.join(dir, 'node_modules', 'meshid');
  packageTree(nested);
  assert.equal(buildVersion(nested), '1.2.3');
});

test('a checkout owned by another user (built as root from a bind mount, say): still the commit, not the package version alone', (t) => {
  if (process.geteuid?.() !== 0) return t.skip('needs root, to give the checkout to another uid');
  const { dir, cleanup } = tempDir('meshid-build-version-');
  t.after(cleanup);
  packageTree(dir);
  const short = commit(dir);
  // git refuses a repository another user owns ("dubious ownership") unless told it is safe.
  execFileSync('chown', ['-R', '65534:65534', dir]);
  assert.equal(buildVersion(dir), `1.2.3+${short}`);
});
