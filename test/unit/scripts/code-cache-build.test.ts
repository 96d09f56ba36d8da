/**
 * scripts/code-cache-build.mjs, the code-cache step of scripts/bundle.mjs, run on stand-in bundles: a build whose
 * cache cannot be made, or whose cache-making run fails otherwise than expected, fails loudly instead of shipping an
 * executable that compiles its whole bundle at every start, or one that crashes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../../src/common/paths.js';
import { tempDir } from '../../support/server-kit.js';

type Training = string[] | { argv: string[]; exitCode?: number; stderr?: RegExp };
const { withCodeCache } = (await import(pathToFileURL(path.join(packageRoot, 'scripts', 'code-cache-build.mjs')).href)) as {
  withCodeCache: (options: { dir: string; name: string; loader: string; training: Training }) => void;
};
const loader = path.join(packageRoot, 'scripts', 'code-cache-loader.mjs');

/** A stand-in bundle NAME.cjs in a new directory, with `source` as its code. */
function standIn(t: { after(fn: () => void): void }, source: string): { dir: string; name: string; bundle: string } {
  const { dir, cleanup } = tempDir('meshid-code-cache-build-');
  t.after(cleanup);
  const bundle = path.join(dir, 'tool.cjs');
  fs.writeFileSync(bundle, `#!/usr/bin/env node\n${source}\n`);
  return { dir, name: 'tool', bundle };
}

test('a training run that ends as expected leaves the entry and a cache the entry then uses', (t) => {
  const { dir, name, bundle } = standIn(t, "process.stdout.write('ran ' + process.argv.slice(2).join(' '));");
  withCodeCache({ dir, name, loader, training: ['--help'] });
  assert.ok(fs.existsSync(`${bundle}.cache`));
  const run = spawnSync(process.execPath, [path.join(dir, 'tool.mjs'), 'x'], { encoding: 'utf8', env: { ...process.env, MESHID_CODE_CACHE_REPORT: '1' } });
  assert.equal(run.stdout, 'ran x');
  assert.match(run.stderr, /^code cache: used$/m);
});

test('a training run expected to fail (an admin command against no socket) passes when it fails that way', (t) => {
  const { dir, name, bundle } = standIn(t, "process.stderr.write('Error: Unavailable: cannot reach meshid-server on /nowhere/admin.sock\\n'); process.exitCode = 1;");
  withCodeCache({ dir, name, loader, training: { argv: ['entry', 'show'], exitCode: 1, stderr: /cannot reach meshid-server on / } });
  assert.ok(fs.existsSync(`${bundle}.cache`));
});

test('a bundle that throws as it loads fails the build, even where the training run is expected to exit 1, and says why', (t) => {
  // Exits 1 as the server's training run does, and the loader still writes a cache at exit: only its stderr tells.
  const { dir, name } = standIn(t, "throw new Error('a module of the bundle is missing');");
  assert.throws(
    () => withCodeCache({ dir, name, loader, training: { argv: ['entry', 'show'], exitCode: 1, stderr: /cannot reach meshid-server on / } }),
    /^Error: bundle: cannot make the code cache of tool: `tool entry show` failed otherwise than expected[^]*a module of the bundle is missing/,
  );
});

test('a training run that ends with another exit code, or by a signal, fails the build naming how it ended', (t) => {
  const { dir, name } = standIn(t, 'process.exitCode = 3;');
  assert.throws(() => withCodeCache({ dir, name, loader, training: ['run', '--help'] }), /`tool run --help` ended with exit 3, not exit 0/);
  const killed = standIn(t, "process.kill(process.pid, 'SIGKILL');");
  assert.throws(() => withCodeCache({ dir: killed.dir, name: killed.name, loader, training: ['run', '--help'] }), /ended with signal SIGKILL, not exit 0/);
});

test('a training run that writes no cache fails the build, a cache left by an earlier build not standing for it', (t) => {
  // Ends 0 without Node's exit event, at which the loader writes the cache.
  const { dir, name, bundle } = standIn(t, 'process.reallyExit(0);');
  fs.writeFileSync(`${bundle}.cache`, "an earlier build's cache");
  assert.throws(() => withCodeCache({ dir, name, loader, training: ['run', '--help'] }), /`tool run --help` wrote no \S+tool\.cjs\.cache/);
  assert.equal(fs.existsSync(`${bundle}.cache`), false, 'the stale cache is gone');
});
