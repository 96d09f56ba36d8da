// The code-cache step of scripts/bundle.mjs: writes an executable's entry (scripts/code-cache-loader.mjs) beside its
// CommonJS bundle and makes the bundle's V8 code cache by running the entry once. Its own file so that the tests can
// run it on stand-in bundles.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes DIR/NAME.mjs, the entry that runs DIR/NAME.cjs from a V8 code cache, and makes that cache by running the entry
 * once with `training`: its arguments, or them, the exit code they end with and what that run's stderr must say. The
 * cache holds what that run compiled.
 *
 * Throws when the run did not end as `training` says or left no cache: the build must not ship silently an executable
 * that compiles ~1.7 MB at every start (P6), nor one that crashes. A server whose training run is expected to exit 1
 * (an admin command against no socket) would pass on an exit code alone while failing for another reason (a bundle
 * that throws as it loads exits 1 too, and its cache is still written at exit), so such a run's stderr is checked too.
 */
export function withCodeCache({ dir, name, loader, training }) {
  const { argv, exitCode = 0, stderr: expectedStderr } = Array.isArray(training) ? { argv: training } : training;
  const bundle = path.join(dir, `${name}.cjs`);
  // The hashbang would be a syntax error inside the CommonJS wrapper; a blank line keeps the source map's lines.
  const source = asciiOnly(fs.readFileSync(bundle, 'utf8').replace(/^#!.*/, ''));
  fs.writeFileSync(bundle, source);
  const entry = path.join(dir, `${name}.mjs`);
  fs.writeFileSync(entry, fs.readFileSync(loader, 'utf8').replace('__BUNDLE__', JSON.stringify(`./${name}.cjs`)), { mode: 0o755 });
  const env = { ...process.env, MESHID_CODE_CACHE_WRITE: '1' };
  // Its V8 flags would be hashed into the cache, which a start without them then refuses.
  delete env.NODE_OPTIONS;
  fs.rmSync(`${bundle}.cache`, { force: true });
  const made = spawnSync(process.execPath, [entry, ...argv], { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const stderr = made.stderr ?? '';
  const wrong =
    made.error !== undefined ? `it could not be run: ${made.error.message}`
    : made.status !== exitCode ? `\`${name} ${argv.join(' ')}\` ended with ${made.status === null ? `signal ${made.signal}` : `exit ${made.status}`}, not exit ${exitCode}`
    : expectedStderr !== undefined && !expectedStderr.test(stderr) ? `\`${name} ${argv.join(' ')}\` failed otherwise than expected (${expectedStderr})`
    : !fs.existsSync(`${bundle}.cache`) ? `\`${name} ${argv.join(' ')}\` wrote no ${bundle}.cache`
    : undefined;
  if (wrong !== undefined) {
    throw new Error(`bundle: cannot make the code cache of ${name}: ${wrong}${stderr.trim() === '' ? '' : `; its stderr:\n${stderr.trimEnd()}`}`);
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
