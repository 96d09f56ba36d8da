// Compiles meshid's two native addons (native/peercred, native/malloc) with node-gyp, against the headers of the Node
// that runs this script. node-gyp's own default downloads headers from nodejs.org, which fails offline; a fixed
// --nodedir=/usr fits Debian's packaged Node only. Every Node install that ships headers keeps them at
// <prefix>/include/node beside <prefix>/bin/node: Debian's (/usr), nodejs.org's tarballs, nvm's and Homebrew's.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ADDONS = ['native/peercred', 'native/malloc'];

/** The install prefix of the Node at `execPath` when its headers are there; undefined otherwise. */
export function nodeHeadersPrefix(execPath) {
  const prefix = path.resolve(path.dirname(fs.realpathSync(execPath)), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node.h')) ? prefix : undefined;
}

/**
 * node-gyp's arguments for `addon`. A nodedir the operator configured (npm's `nodedir`, which npm passes on as
 * npm_config_nodedir) is theirs to choose and is left to node-gyp; without one, the running Node's own headers, else
 * node-gyp's default (a download).
 */
export function nodeGypArgs(addon, { execPath = process.execPath, env = process.env } = {}) {
  const configured = env.npm_config_nodedir !== undefined && env.npm_config_nodedir !== '';
  const prefix = configured ? undefined : nodeHeadersPrefix(execPath);
  return ['rebuild', ...(prefix !== undefined ? [`--nodedir=${prefix}`] : []), '--directory', addon];
}

/**
 * node-gyp's script: the devDependency in a clone; in an install from a tarball or the registry (no devDependencies)
 * the node-gyp npm ships, which npm names to the scripts it runs (npm_config_node_gyp).
 */
export function nodeGypScript(env = process.env) {
  try {
    return createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  } catch (err) {
    if (env.npm_config_node_gyp !== undefined && env.npm_config_node_gyp !== '') return env.npm_config_node_gyp;
    throw err;
  }
}

/**
 * Whether `addon` (native/NAME) has its built NAME.node and no source file in native/NAME (build/ aside) is newer than
 * it: a checkout or pull that changes a source makes it stale, as make would judge it.
 */
export function isUpToDate(addon, root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))) {
  const dir = path.join(root, addon);
  let built;
  try {
    built = fs.statSync(path.join(dir, 'build', 'Release', `${path.basename(addon)}.node`)).mtimeMs;
  } catch {
    return false;
  }
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile())
    .every((e) => fs.statSync(path.join(dir, e.name)).mtimeMs <= built);
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // `install` (every install; a tarball or registry install runs no `prepare`) and `prepare` (a clone's npm install,
  // right after `install`) build only what is missing or stale, so a fresh clone compiles each addon once;
  // build:native rebuilds all.
  const ifStale = process.argv.includes('--if-stale');
  for (const addon of ADDONS) {
    if (ifStale && isUpToDate(addon)) continue;
    const r = spawnSync(process.execPath, [nodeGypScript(), ...nodeGypArgs(addon)], { stdio: 'inherit' });
    if (r.status !== 0) {
      process.stderr.write(`build-native: node-gyp failed for ${addon}: a C and C++ compiler, make and python3 are needed (Debian: apt-get install build-essential python3)\n`);
      process.exit(r.status ?? 1);
    }
  }
}
