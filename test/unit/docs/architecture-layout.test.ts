/**
 * docs/ARCHITECTURE.md is where a newcomer looks a file up: every source file must be named there, and every path it
 * spells out must exist, so a file added, renamed or removed without its line fails here instead of misleading a reader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';

const ARCHITECTURE = fs.readFileSync(path.join(packageRoot, 'docs', 'ARCHITECTURE.md'), 'utf8');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(packageRoot, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(rel);
    return e.name.endsWith('.ts') ? [rel] : [];
  });
}

/** Named as the layout names files: its path, or its name without .ts as a whole word (kebab-case included). */
function isNamed(file: string): boolean {
  if (ARCHITECTURE.includes(file)) return true;
  const stem = path.basename(file, '.ts').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<![\\w-])${stem}(?:\\.ts)?(?![\\w-])`).test(ARCHITECTURE);
}

test('every file under src/ is named in docs/ARCHITECTURE.md', () => {
  const unnamed = sourceFiles('src').filter((f) => !isNamed(f));
  assert.deepEqual(unnamed, [], `name these in docs/ARCHITECTURE.md's layout: ${unnamed.join(', ')}`);
});

test('every file path docs/ARCHITECTURE.md spells out exists', () => {
  const paths = [...ARCHITECTURE.matchAll(/(?<![\w/-])(?:src|scripts|test|bench|native|docs)\/[\w./-]*\.(?:ts|mjs|md|sh)\b/g)].map((m) => m[0]);
  assert.ok(paths.length > 5, `too few paths found (${paths.length}): has the layout's form changed?`);
  const missing = [...new Set(paths)].filter((p) => !fs.existsSync(path.join(packageRoot, p)));
  assert.deepEqual(missing, [], `docs/ARCHITECTURE.md names files that do not exist: ${missing.join(', ')}`);
});
