// The version a build of meshid reports (`--version`, and each agent to its server): package.json's, plus the commit
// it was built from as semver build metadata. package.json's alone is the same for every build, so an operator
// upgrading agents in waves could not tell which ones run the new build. Computed once, at bundle time, so that no
// start runs git.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * git's answer in `root`, trimmed; undefined when git is missing or fails (no checkout: a tarball, an npm install).
 * `root` is declared safe: git refuses a checkout another user owns (root building a bind-mounted one, say), and the
 * version would lose its commit without a word. That trusts the checkout no further than building it does.
 */
function git(root, args) {
  const safe = ['-c', `safe.directory=${fs.realpathSync(root)}`];
  const r = spawnSync('git', [...safe, ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * `0.1.0+6ebd53b4`; `0.1.0+6ebd53b4-dirty` when tracked files differ from that commit (untracked ones do not count:
 * dist/ and the like are ignored, a stray scratch file is not the build); `0.1.0` outside a git checkout. The checkout
 * must be meshid's own: a package unpacked inside some other repository (node_modules of a project) would otherwise
 * report that project's commit.
 */
export function buildVersion(root) {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const version = typeof pkg.version === 'string' && pkg.version !== '' ? pkg.version : 'unknown';
  const top = git(root, ['rev-parse', '--show-toplevel']);
  if (top === undefined || fs.realpathSync(top) !== fs.realpathSync(root)) return version;
  const commit = git(root, ['rev-parse', '--short', 'HEAD']);
  if (commit === undefined || !/^[0-9a-f]+$/.test(commit)) return version;
  // No answer from git status (a read-only checkout it cannot refresh the index of): not marked, rather than guessed.
  const changes = git(root, ['status', '--porcelain', '--untracked-files=no']);
  return `${version}+${commit}${changes !== undefined && changes !== '' ? '-dirty' : ''}`;
}
