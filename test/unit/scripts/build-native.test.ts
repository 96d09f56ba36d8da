/**
 * scripts/build-native.mjs, which `npm install` runs (prepare) to compile the native addons: it finds the headers of
 * the Node that runs it, so that a Node installed from nodejs.org or by nvm builds offline as Debian's does. Stand-in
 * install prefixes (a bin/node link, with or without include/node/node.h).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../../src/common/paths.js';
import { tempDir } from '../../support/server-kit.js';

const { nodeHeadersPrefix, nodeGypArgs, isUpToDate } = (await import(pathToFileURL(path.join(packageRoot, 'scripts', 'build-native.mjs')).href)) as {
  isUpToDate: (addon: string, root: string) => boolean;
  nodeHeadersPrefix: (execPath: string) => string | undefined;
  nodeGypArgs: (addon: string, options?: { execPath?: string; env?: Record<string, string | undefined> }) => string[];
};

/** A temporary directory by its real path: what nodeHeadersPrefix answers with. */
function realTempDir(): { dir: string; cleanup: () => void } {
  const t = tempDir('meshid-build-native-');
  return { dir: fs.realpathSync(t.dir), cleanup: t.cleanup };
}

/** A stand-in Node install under `prefix`: bin/node (an empty file, or a link to `linkTo`), and its headers when `headers`. */
function install(prefix: string, headers: boolean, linkTo?: string): string {
  fs.mkdirSync(path.join(prefix, 'bin'), { recursive: true });
  const node = path.join(prefix, 'bin', 'node');
  if (linkTo === undefined) fs.writeFileSync(node, '');
  else fs.symlinkSync(linkTo, node);
  if (headers) {
    fs.mkdirSync(path.join(prefix, 'include', 'node'), { recursive: true });
    fs.writeFileSync(path.join(prefix, 'include', 'node', 'node.h'), '');
  }
  return node;
}

test('a Node whose install prefix holds its headers (nodejs.org, nvm) builds against that prefix', (t) => {
  const { dir, cleanup } = realTempDir();
  t.after(cleanup);
  const prefix = path.join(dir, '.nvm', 'versions', 'node', 'v20.20.2');
  const execPath = install(prefix, true);
  assert.equal(nodeHeadersPrefix(execPath), prefix);
  assert.deepEqual(nodeGypArgs('native/peercred', { execPath, env: {} }), ['rebuild', `--nodedir=${prefix}`, '--directory', 'native/peercred']);
});

test('a Node reached through a link is judged by where the link leads; one without headers is left to node-gyp', (t) => {
  const { dir, cleanup } = realTempDir();
  t.after(cleanup);
  // /usr/local/bin/node -> a headerless install: /usr/local's headers belong to another Node.
  const bare = install(path.join(dir, 'bare'), false);
  const linked = install(path.join(dir, 'local'), true, bare);
  assert.equal(nodeHeadersPrefix(linked), undefined);
  assert.deepEqual(nodeGypArgs('native/malloc', { execPath: linked, env: {} }), ['rebuild', '--directory', 'native/malloc']);
  // And the other way round: a link into an install with headers builds against that install.
  const full = install(path.join(dir, 'full'), true);
  assert.equal(nodeHeadersPrefix(install(path.join(dir, 'shim'), false, full)), path.join(dir, 'full'));
});

test('a nodedir the operator configured for npm (npm_config_nodedir) is left to node-gyp, which reads it', (t) => {
  const { dir, cleanup } = realTempDir();
  t.after(cleanup);
  const execPath = install(path.join(dir, 'node'), true);
  assert.deepEqual(nodeGypArgs('native/malloc', { execPath, env: { npm_config_nodedir: '/opt/node-headers' } }), ['rebuild', '--directory', 'native/malloc']);
  assert.deepEqual(nodeGypArgs('native/malloc', { execPath, env: { npm_config_nodedir: '' } }), ['rebuild', `--nodedir=${path.join(dir, 'node')}`, '--directory', 'native/malloc'], 'an empty setting is none');
});

test('an addon is rebuilt by install and prepare (--if-stale) only when its NAME.node is missing or older than a source beside binding.gyp', (t) => {
  const { dir, cleanup } = realTempDir();
  t.after(cleanup);
  const addon = path.join(dir, 'native', 'demo');
  fs.mkdirSync(path.join(addon, 'build', 'Release'), { recursive: true });
  const source = path.join(addon, 'demo.c');
  const gyp = path.join(addon, 'binding.gyp');
  fs.writeFileSync(source, '');
  fs.writeFileSync(gyp, '{}');
  const at = (file: string, seconds: number): void => fs.utimesSync(file, seconds, seconds);
  at(source, 1_000);
  at(gyp, 1_000);
  assert.equal(isUpToDate('native/demo', dir), false, 'never built');
  const built = path.join(addon, 'build', 'Release', 'demo.node');
  fs.writeFileSync(built, '');
  at(built, 2_000);
  // Files under build/ (node-gyp's own, written after the .node) do not count.
  const makefile = path.join(addon, 'build', 'Makefile');
  fs.writeFileSync(makefile, '');
  at(makefile, 3_000);
  assert.equal(isUpToDate('native/demo', dir), true, 'built after every source');
  at(source, 2_500);
  assert.equal(isUpToDate('native/demo', dir), false, 'a source changed after the build (a pull)');
  at(source, 1_000);
  at(gyp, 2_500);
  assert.equal(isUpToDate('native/demo', dir), false, 'binding.gyp changed after the build');
});

