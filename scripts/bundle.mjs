// Bundles each executable with its dependencies into dist/bin, so that a start reads and links a few files instead of
// the ~300 modules of meshid, grpc-js, protobufjs and pino: the ESM loader's per-module cost was a fifth of a CLI
// command's start and of an agent restart's CPU (bench/README.md). The server's is code split: `run` is loaded only by
// `run`, as the unbundled CLI loads it. The agent's is one CommonJS file started from a V8 code cache made here
// (scripts/code-cache-loader.mjs): agent restarts serve from their cache sooner (P6). Native addons (better-sqlite3,
// meshid's own by path) stay outside.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildVersion } from './build-version.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// CommonJS packages inside an ES module bundle still call require().
const banner = "import { createRequire as __meshidCreateRequire } from 'node:module';\nconst require = __meshidCreateRequire(import.meta.url);";

/**
 * A dependency that reads files beside its own code (@grpc/reflection's protos) finds them through __dirname, which in
 * a bundle would be dist/bin: each __dirname and __filename of a package file becomes that file's own place, resolved
 * from the bundle at run time as Node would resolve the package (none of these has an exports map that forbids it).
 */
const ownDirname = {
  name: 'own-dirname',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/].*\.js$/ }, (args) => {
      const source = fs.readFileSync(args.path, 'utf8');
      if (!/\b__(dirname|filename)\b/.test(source)) return undefined;
      const inPackage = args.path.split(`${path.sep}node_modules${path.sep}`).pop().split(path.sep);
      const request = JSON.stringify(inPackage.join('/'));
      const contents = source
        .replace(/\b__dirname\b/g, `require('node:path').dirname(require.resolve(${request}))`)
        .replace(/\b__filename\b/g, `require.resolve(${request})`);
      return { contents, loader: 'js' };
    });
  },
};

// Chunk names change with their content: the chunks of an earlier build would otherwise pile up.
fs.rmSync(path.join(root, 'dist/bin'), { recursive: true, force: true });
const common = {
  absWorkingDir: root,
  outdir: 'dist/bin',
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3'],
  plugins: [ownDirname],
  sourcemap: 'linked',
  logLevel: 'warning',
};
// src/common/meshid-version.ts.
const version = JSON.stringify(buildVersion(root));

const server = await build({
  ...common,
  entryPoints: { 'meshid-server': 'dist/src/server/main.js' },
  outExtension: { '.js': '.mjs' },
  splitting: true,
  format: 'esm',
  banner: { js: banner },
  define: { MESHID_BUILD_VERSION: version },
  metafile: true,
});
for (const out of Object.keys(server.metafile.outputs)) {
  if (!out.endsWith('.mjs')) continue;
  const file = path.join(root, out);
  fs.writeFileSync(file, asciiOnly(fs.readFileSync(file, 'utf8')));
}

await build({
  ...common,
  entryPoints: { 'meshid-agent': 'dist/src/agent/main.js' },
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  // meshid's own modules find their files from import.meta.url: the bundle's own place.
  banner: { js: "var __meshidImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  define: { MESHID_BUILD_VERSION: version, 'import.meta.url': '__meshidImportMetaUrl' },
  // require.resolve of a package file runs at start, against node_modules, as it does unbundled.
  logOverride: { 'require-resolve-not-external': 'silent' },
});
withCodeCache('meshid-agent');

/**
 * Writes dist/bin/NAME.mjs, the entry that runs NAME.cjs from a V8 code cache, and makes that cache by running the
 * entry once (`run --help`: the modules `run` loads, compiled and run as at a start, without starting anything).
 */
function withCodeCache(name) {
  const bundle = path.join(root, 'dist/bin', `${name}.cjs`);
  // The hashbang would be a syntax error inside the CommonJS wrapper; a blank line keeps the source map's lines.
  const source = asciiOnly(fs.readFileSync(bundle, 'utf8').replace(/^#!.*/, ''));
  fs.writeFileSync(bundle, source);
  const loader = fs.readFileSync(path.join(root, 'scripts/code-cache-loader.mjs'), 'utf8').replace('__BUNDLE__', JSON.stringify(`./${name}.cjs`));
  const entry = path.join(root, 'dist/bin', `${name}.mjs`);
  fs.writeFileSync(entry, loader, { mode: 0o755 });
  const env = { ...process.env, MESHID_CODE_CACHE_WRITE: '1' };
  delete env.NODE_OPTIONS;
  const made = spawnSync(process.execPath, [entry, 'run', '--help'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (made.status !== 0 || !fs.existsSync(`${bundle}.cache`)) {
    // Still a working executable: it compiles the bundle from source at every start.
    process.stderr.write(`bundle: no code cache for ${name} (exit ${made.status ?? made.signal})\n`);
  }
}

/**
 * esbuild escapes non-ASCII characters in code, not in the comments it keeps (`name → version`): one such character
 * makes V8 hold and scan the whole file as two-byte, which took the agent bundle's (1.7 MB) compile from ~38 to ~62 ms
 * of CPU. Each becomes '?' (one per UTF-16 unit, so columns stay the source map's).
 */
function asciiOnly(source) {
  return source.replace(/[^\x00-\x7f]/gu, (c) => '?'.repeat(c.length));
}
