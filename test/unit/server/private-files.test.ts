/**
 * The file copy a backup and a restore make of the datastore and the CA keys, on real files: one larger than a Buffer
 * can hold (a sparse file stands in for a datastore over 2 GiB) is copied whole, owner-only and byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { copyPrivateFile } from '../../../src/server/backup/private-files.js';
import { tempDir } from '../../support/server-kit.js';

const vanished = (): Error => new Error('vanished');

test('a file over 2 GiB (sparse, standing in for a large datastore) is copied whole, 0600, its last bytes included', { timeout: 120_000 }, (t) => {
  const { dir, cleanup } = tempDir('meshid-private-copy-');
  t.after(cleanup);
  const from = path.join(dir, 'datastore.sqlite3');
  const size = 2 ** 31 + 4096;
  fs.writeFileSync(from, '');
  fs.truncateSync(from, size - 4);
  fs.appendFileSync(from, 'last');
  const to = path.join(dir, 'copy');
  copyPrivateFile(from, to, vanished);
  const st = fs.statSync(to);
  assert.equal(st.size, size);
  assert.equal(st.mode & 0o777, 0o600);
  const fd = fs.openSync(to, 'r');
  const tail = Buffer.alloc(8);
  fs.readSync(fd, tail, 0, 8, size - 8);
  fs.closeSync(fd);
  assert.deepEqual(tail, Buffer.from('\0\0\0\0last'));
});
