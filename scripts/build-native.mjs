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

/** Whether `addon` (native/NAME) has its built NAME.node. */
export function isBuilt(addon, root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))) {
  return fs.existsSync(path.join(root, addon, 'build', 'Release', `${path.basename(addon)}.node`));
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // `install` (a tarball or registry install, where `prepare` does not run) builds only what is missing; `prepare`
  // (a clone's npm install) and build:native rebuild all.
  const ifMissing = process.argv.includes('--if-missing');
  for (const addon of ADDONS) {
    if (ifMissing && isBuilt(addon)) continue;
    const r = spawnSync(process.execPath, [nodeGypScript(), ...nodeGypArgs(addon)], { stdio: 'inherit' });
    if (r.status !== 0) {
      process.stderr.write(`build-native: node-gyp failed for ${addon}: a C compiler, make and python3 are needed (Debian: apt-get install build-essential python3)\n`);
      process.exit(r.status ?? 1);
    }
  }
}
