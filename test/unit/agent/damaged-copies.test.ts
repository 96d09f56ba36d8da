/**
 * setAside on its own: which name a damaged copy gets and which older copies it costs, for aside files left in states
 * the agent's own runs do not produce (an operator removed some, a numbering past 9).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setAside } from '../../../src/agent/storage/damaged-copies.js';

function dirWith(t: { after: (fn: () => void) => void }, names: readonly string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-aside-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const n of names) fs.writeFileSync(path.join(dir, n), n);
  fs.writeFileSync(path.join(dir, 'state.json'), 'damaged');
  return dir;
}

const asideFiles = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.startsWith('state.json.bad')).sort();

test('with the first copy gone (removed by hand) the next copy still follows the last number, and never reuses the first\'s name', (t) => {
  const dir = dirWith(t, ['state.json.bad.2', 'state.json.bad.3']);
  assert.equal(setAside(dir, 'state.json', 'state.json.bad', 'move'), 'state.json.bad.4');
  assert.deepEqual(asideFiles(dir), ['state.json.bad.2', 'state.json.bad.3', 'state.json.bad.4']);
});

test('numbers compare as numbers: after .9 and .10 comes .11, and the oldest numbered copies (.2, .9) go first, the first copy and the latest stay', (t) => {
  const dir = dirWith(t, ['state.json.bad', 'state.json.bad.2', 'state.json.bad.9', 'state.json.bad.10']);
  assert.equal(setAside(dir, 'state.json', 'state.json.bad', 'copy'), 'state.json.bad.11');
  assert.deepEqual(asideFiles(dir), ['state.json.bad', 'state.json.bad.10', 'state.json.bad.11', 'state.json.bad.9']);
  assert.equal(fs.readFileSync(path.join(dir, 'state.json.bad.11'), 'utf8'), 'damaged');
  assert.equal(fs.statSync(path.join(dir, 'state.json.bad.11')).mode & 0o777, 0o600, 'a copy holds keys: owner only');
  assert.equal(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'), 'damaged', 'a copy leaves the file in place');
});

test('names that only look numbered (.0, .01, .old) are not copies of ours: neither counted nor removed', (t) => {
  const dir = dirWith(t, ['state.json.bad', 'state.json.bad.0', 'state.json.bad.01', 'state.json.bad.old', 'state.json.bad.2', 'state.json.bad.3']);
  assert.equal(setAside(dir, 'state.json', 'state.json.bad', 'move'), 'state.json.bad.4');
  assert.deepEqual(asideFiles(dir), ['state.json.bad', 'state.json.bad.0', 'state.json.bad.01', 'state.json.bad.2', 'state.json.bad.3', 'state.json.bad.4', 'state.json.bad.old']);
  assert.equal(setAside(dir, 'state.json.bad.4', 'state.json.bad', 'copy'), 'state.json.bad.5');
  assert.deepEqual(asideFiles(dir), ['state.json.bad', 'state.json.bad.0', 'state.json.bad.01', 'state.json.bad.3', 'state.json.bad.4', 'state.json.bad.5', 'state.json.bad.old']);
});

test('a copy that cannot be made costs no older copy', (t) => {
  const dir = dirWith(t, ['state.json.bad', 'state.json.bad.2', 'state.json.bad.3', 'state.json.bad.4']);
  fs.rmSync(path.join(dir, 'state.json'));
  fs.mkdirSync(path.join(dir, 'state.json'));
  assert.throws(() => setAside(dir, 'state.json', 'state.json.bad', 'copy'));
  assert.deepEqual(asideFiles(dir), ['state.json.bad', 'state.json.bad.2', 'state.json.bad.3', 'state.json.bad.4']);
});
