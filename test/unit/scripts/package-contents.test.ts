/**
 * What `npm pack` puts in meshid's tarball, and what an install of that tarball runs: the executables its package.json
 * names, and what the `install` script needs to compile the native addons there (`prepare`, which builds them in a
 * clone, does not run for a tarball; the addons' build/ directories are not packed). Nothing else: package.json's
 * `files` keeps the tests, benchmarks, TypeScript sources and unbundled build out (2,541 files, 6.5 MB before it).
 * test/integration/package-install.test.ts runs the daemons from an unpacked tarball.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../../src/common/paths.js';

const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string>; license: string };

async function packedFiles(): Promise<string[]> {
  // --ignore-scripts: `prepare` would rebuild everything first.
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: packageRoot, maxBuffer: 64 << 20 });
  const [packed] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
  return packed!.files.map((f) => f.path);
}

test("npm pack puts package.json's bin targets in the tarball, and what its install script builds the native addons from", async () => {
  const files = new Set(await packedFiles());
  assert.deepEqual(Object.keys(pkg.bin).sort(), ['meshid-agent', 'meshid-server']);
  for (const target of Object.values(pkg.bin)) assert.ok(files.has(target), `${target} is not packed`);
  // Each entry runs its bundle from the code cache beside it.
  for (const name of ['meshid-agent', 'meshid-server']) {
    assert.equal(pkg.bin[name], `dist/bin/${name}.mjs`);
    for (const file of [`${name}.cjs`, `${name}.cjs.cache`]) assert.ok(files.has(`dist/bin/${file}`), `${file} is not packed`);
  }

  assert.match(pkg.scripts['install'] ?? '', /^node scripts\/build-native\.mjs --if-stale$/);
  assert.ok(files.has('scripts/build-native.mjs'));
  for (const addon of ['peercred', 'malloc']) {
    assert.ok(files.has(`native/${addon}/binding.gyp`) && files.has(`native/${addon}/${addon}.c`), `native/${addon}'s sources are not packed`);
    if (addon === 'malloc') assert.ok(files.has('native/malloc/v8-heap.cc'), "native/malloc's C++ source is not packed");
    assert.ok(![...files].some((f) => f.startsWith(`native/${addon}/build/`)), `native/${addon}/build (this machine's build) is packed`);
  }
});

test("npm pack puts LICENSE in the tarball (npm adds it unasked): the Apache License 2.0 text that package.json's license names", async () => {
  assert.equal(pkg.license, 'Apache-2.0');
  assert.ok((await packedFiles()).includes('LICENSE'), 'LICENSE is not packed');
  const text = fs.readFileSync(path.join(packageRoot, 'LICENSE'), 'utf8');
  assert.match(text, /^\n {33}Apache License\n {27}Version 2\.0, January 2004\n/);
  assert.match(text, /TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION[\s\S]+END OF TERMS AND CONDITIONS[\s\S]+APPENDIX: How to apply the Apache License to your work\./);
});

test('npm pack puts only what the installed executables read at run time in the tarball', async () => {
  const files = await packedFiles();
  // The bundles, their source maps (--enable-source-maps) and their code caches; the .proto files the daemons and
  // CLIs load (src/common/paths.ts finds them beside package.json); the addons' sources and the script that builds
  // them at install; npm's own package.json, README.md and LICENSE.
  const runtime = /^(dist\/bin\/[^/]+|proto\/.+\.proto|native\/(peercred|malloc)\/(binding\.gyp|(peercred|malloc)\.c)|native\/malloc\/v8-heap\.cc|scripts\/build-native\.mjs|package\.json|README\.md|LICENSE)$/;
  const extra = files.filter((f) => !runtime.test(f));
  assert.deepEqual(extra, [], `${extra.length} packed files not needed at run time: ${extra.slice(0, 20).join(', ')}${extra.length > 20 ? ', …' : ''}`);
  for (const prefix of ['dist/test/', 'dist/src/', 'dist/bench/', 'test/', 'bench/', 'src/', 'docs/', '.ci/']) {
    assert.ok(!files.some((f) => f.startsWith(prefix)), `${prefix} is packed`);
  }
  assert.ok(!files.some((f) => f.endsWith('.ts')), 'TypeScript sources are packed');

  // Every .proto under proto/ (the daemons load them by path), every file scripts/bundle.mjs wrote to dist/bin.
  const under = (dir: string): string[] =>
    fs.readdirSync(path.join(packageRoot, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? under(`${dir}/${e.name}`) : [`${dir}/${e.name}`]));
  const packed = new Set(files);
  for (const f of [...under('proto').filter((f) => f.endsWith('.proto')), ...under('dist/bin')]) assert.ok(packed.has(f), `${f} is not packed`);
});
