/**
 * The version the README and docs/*.md show (`meshid-server 0.1.0+6ebd53b4`, an agent's `Agent version    : …`) has the
 * shape `--version` really prints: as many hex digits of the commit as git's abbreviation of this checkout gives,
 * which grows with the history (7 once, 8 now). Checked against the built executables' own --version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { AGENT_MAIN } from '../../support/cluster.js';
import { runNode, SERVER_MAIN } from '../../support/server-process.js';

const DOCS = new Map([
  ['README.md', fs.readFileSync(path.join(packageRoot, 'README.md'), 'utf8')],
  ...fs
    .readdirSync(path.join(packageRoot, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f): [string, string] => [`docs/${f}`, fs.readFileSync(path.join(packageRoot, 'docs', f), 'utf8')]),
]);

/** A build's version: package.json's, then the commit as semver build metadata, `-dirty` when built with changes. */
const BUILD_VERSION = /\b\d+\.\d+\.\d+\+([0-9a-f]+)(?:-dirty)?\b/;

async function printedVersion(main: string): Promise<string> {
  const r = await runNode(main, ['--version']);
  assert.equal(r.code, 0, r.err);
  return r.out.trim();
}

test("the docs' version examples have as many hex digits of the commit as --version prints, and its layout", async (t) => {
  const printed = [await printedVersion(SERVER_MAIN), await printedVersion(AGENT_MAIN)];
  const commit = BUILD_VERSION.exec(printed[0]!)?.[1];
  if (commit === undefined) {
    // Built outside a git checkout (a tarball): nothing to compare the examples with.
    t.skip(`--version names no commit: ${printed[0]}`);
    return;
  }
  const examples = [...DOCS].flatMap(([file, text]) => [...text.matchAll(new RegExp(BUILD_VERSION, 'g'))].map((m) => ({ file, example: m[0], digits: m[1]!.length })));
  assert.ok(examples.length > 0, 'the docs show no build version');
  for (const { file, example, digits } of examples) {
    assert.equal(digits, commit.length, `${file}: ${example} has ${digits} hex digits of the commit; --version prints ${commit.length} (${printed[0]})`);
  }
  // Each executable's line, as the docs show one: its name, a space, the version, nothing else.
  const shape = (line: string): string => line.replace(new RegExp(BUILD_VERSION, 'g'), 'VERSION');
  const shown = [...DOCS.values()].flatMap((text) => [...text.matchAll(/`(meshid-(?:server|agent) [^`]*\+[0-9a-f]+[^`]*)`/g)].map((m) => m[1]!));
  assert.ok(shown.length > 0, 'the docs show no --version line');
  for (const line of shown) {
    const binary = line.split(' ')[0]!;
    const real = printed[binary === 'meshid-server' ? 0 : 1]!;
    assert.equal(shape(line), shape(real), `the docs show ${line}; ${binary} --version prints ${real}`);
  }
});
