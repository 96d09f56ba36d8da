// Bundles each executable with its dependencies into dist/bin, so that a start reads and links a few files instead of
// the ~300 modules of meshid, grpc-js, protobufjs and pino: the ESM loader's per-module cost was a fifth of a CLI
// command's start and of an agent restart's CPU (bench/HISTORY.md). Each is one CommonJS file started from a V8 code
// cache made here (scripts/code-cache-loader.mjs): agent restarts serve from their cache sooner (P6), and each
// `meshid-server` admin command, a fresh process, compiles less. Modules loaded by a dynamic import() (the server's
// `run`, `restore` and `validate`) stay in the file but run only when imported. Native addons (better-sqlite3,
// meshid's own by path) stay outside.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildVersion } from './build-version.mjs';
import { withCodeCache } from './code-cache-build.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

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

/**
 * Bundles dist/src/MAIN into dist/bin/NAME.cjs and writes NAME.mjs, which runs it from a code cache made by running
 * `training` once.
 */
async function bundleWithCodeCache(name, main, training) {
  await build({
    ...common,
    entryPoints: { [name]: main },
    outExtension: { '.js': '.cjs' },
    format: 'cjs',
    // meshid's own modules find their files from import.meta.url: the bundle's own place.
    banner: { js: "var __meshidImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    define: { MESHID_BUILD_VERSION: version, 'import.meta.url': '__meshidImportMetaUrl' },
    // require.resolve of a package file runs at start, against node_modules, as it does unbundled.
    logOverride: { 'require-resolve-not-external': 'silent' },
  });
  // A cache that cannot be made fails the build (code-cache-build.mjs): the executable would compile its whole bundle
  // at every start, or not start at all.
  withCodeCache({ dir: path.join(root, 'dist/bin'), name, loader: path.join(root, 'scripts/code-cache-loader.mjs'), training });
}

// The agent's cache is made by `run --help`: the modules `run` loads, compiled and run, nothing started (a cache made
// later in a run is refused: the agent sets V8 flags while it runs, and their hash is part of V8's check).
await bundleWithCodeCache('meshid-agent', 'dist/src/agent/main.js', ['run', '--help']);
// The server's by an admin command (the CLI, grpc-js's client and the admin protos) against a socket that is not
// there: what each `meshid-server <command>` process runs before it talks to the server; `run` compiles the rest.
// Its exit 1 is that refusal, not a bundle that throws as it loads (which exits 1 as well): its stderr tells them apart.
await bundleWithCodeCache('meshid-server', 'dist/src/server/main.js', {
  argv: ['entry', 'show', '--admin-socket', path.join(root, 'dist/bin/no-server-here/admin.sock')],
  exitCode: 1,
  stderr: /cannot reach meshid-server on .*no-server-here\/admin\.sock \(no socket there\)/,
});
