import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AnchoredDirectory, identityOf } from '../../../src/server/backup/anchored-directory.js';

// A backup writes the CA keys into the directory it checked, held open: one put in its place by name meanwhile (a
// directory renamed over it, on the same file system) is refused, not written into.

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-anchored-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

class Changed extends Error {}

test('a directory swapped by rename for another on the same file system (same device, other inode) is refused', () => {
  const checked = path.join(DIR, 'checked');
  const other = path.join(DIR, 'other');
  fs.mkdirSync(checked);
  fs.mkdirSync(other);
  const expected = identityOf(fs.statSync(checked));
  const same = AnchoredDirectory.open(checked, expected, () => new Changed());
  same.close();

  fs.renameSync(checked, path.join(DIR, 'checked-moved'));
  fs.renameSync(other, checked);
  assert.equal(fs.statSync(checked).dev, expected.dev, 'the same file system');
  assert.throws(() => AnchoredDirectory.open(checked, expected, () => new Changed()), Changed);
});
