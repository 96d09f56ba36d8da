// Bundles each executable with its dependencies into dist/bin, so that a start reads and links a few files instead of
// the ~300 modules of meshid, grpc-js, protobufjs and pino: the ESM loader's per-module cost was a fifth of a CLI
// command's start and of an agent restart's CPU (bench/README.md). Code split: `run` is loaded only by `run`, as the
// unbundled CLI loads it. Native addons (better-sqlite3, meshid's own by path) stay outside.
import { build } from 'esbuild';
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
await build({
  entryPoints: { 'meshid-agent': 'dist/src/agent/main.js', 'meshid-server': 'dist/src/server/main.js' },
  absWorkingDir: root,
  outdir: 'dist/bin',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3'],
  plugins: [ownDirname],
  banner: { js: banner },
  // src/common/meshid-version.ts.
  define: { MESHID_BUILD_VERSION: JSON.stringify(buildVersion(root)) },
  sourcemap: 'linked',
  logLevel: 'warning',
});
