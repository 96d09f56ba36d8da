/**
 * `--version` of the executables as shipped (dist/bin, bundled by scripts/bundle.mjs): package.json's version plus,
 * when they were built from a git checkout (as the tests run), the commit, so that builds can be told apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { AGENT_MAIN } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';

const packageVersion = (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

function gitIn(args: string[]): string | undefined {
  const r = spawnSync('git', args, { cwd: packageRoot, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const top = gitIn(['rev-parse', '--show-toplevel']);
const checkout = top !== undefined && fs.realpathSync(top) === fs.realpathSync(packageRoot);

test('meshid-server --version and meshid-agent --version print the package version and the commit built from', async () => {
  const escaped = packageVersion.replace(/[.+]/g, '\\$&');
  // The runner bundles before it runs the tests, so the bundles were built from the HEAD checked out now.
  const expected = checkout ? new RegExp(`^${escaped}\\+${gitIn(['rev-parse', '--short', 'HEAD'])!}(-dirty)?$`) : new RegExp(`^${escaped}$`);
  const versions: string[] = [];
  for (const [binary, main] of [['meshid-server', SERVER_MAIN], ['meshid-agent', AGENT_MAIN]] as const) {
    const r = await runNode(main, ['--version']);
    assert.equal(r.code, 0, r.err);
    const m = new RegExp(`^${binary} (\\S+)\\n$`).exec(r.out);
    assert.ok(m, r.out);
    assert.match(m[1]!, expected);
    versions.push(m[1]!);
  }
  assert.equal(versions[0], versions[1], 'one build, one version');
});
