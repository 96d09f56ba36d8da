import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from './paths.js';

/**
 * Replaced by scripts/bundle.mjs (esbuild's `define`) with the version it computed at build time: package.json's,
 * plus the commit as semver build metadata when built from a git checkout. Undeclared in unbundled code (dist/src,
 * as tests run it), where `typeof` reads it as undefined instead of throwing.
 */
declare const MESHID_BUILD_VERSION: string | undefined;

let fromPackage: string | undefined;

/** package.json's version, read once; 'unknown' if it cannot be read. */
function packageVersion(): string {
  if (fromPackage !== undefined) return fromPackage;
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: unknown };
    fromPackage = typeof pkg.version === 'string' && pkg.version !== '' ? pkg.version : 'unknown';
  } catch {
    fromPackage = 'unknown';
  }
  return fromPackage;
}

/**
 * The version of this build, as `--version` prints it and the agent reports it to the server: `0.1.0+6ebd53b4` for a
 * bundle built from a git checkout (`+6ebd53b4-dirty` with uncommitted changes to tracked files), package.json's
 * version alone otherwise (a build without git, or code run unbundled). The package version alone is the same for
 * every build, so it cannot tell an operator which agents an upgrade has reached.
 */
export function meshidVersion(): string {
  return typeof MESHID_BUILD_VERSION === 'string' && MESHID_BUILD_VERSION !== '' ? MESHID_BUILD_VERSION : packageVersion();
}
