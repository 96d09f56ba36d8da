/**
 * A backup whose datastore holds no CA journal beside CA key files (a datastore copied without its -wal file, or from
 * another data dir) is refused by `meshid-server restore`, as a start refuses that data dir: put in place, it would be
 * reported restored and then refused at the server's start, with the operator's old data dir already moved aside.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../support/server-kit.js';
import { backedUp, restoreCli, stagingLeft } from '../support/server-restore-kit.js';
import { teardown } from '../support/teardown.js';

test('restore refuses a backup whose datastore has no CA journal beside its CA key files (all of them, or a single one), and makes no data dir', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-journal-');
  teardown(t).after(cleanup);
  const { live, backup } = await backedUp(dir);
  assert.equal(await live.stop(), 0);

  const withoutJournal = (name: string, keep: (keyFile: string, index: number) => boolean): { copy: string; kept: string[] } => {
    const copy = path.join(dir, name);
    fs.cpSync(backup, copy, { recursive: true });
    const db = new Database(path.join(copy, 'datastore.sqlite3'));
    try {
      db.exec('DELETE FROM ca_records');
    } finally {
      db.close();
    }
    const keys = path.join(copy, 'ca', 'keys');
    for (const [i, f] of fs.readdirSync(keys).sort().entries()) if (!keep(f, i)) fs.rmSync(path.join(keys, f));
    return { copy, kept: fs.readdirSync(keys) };
  };

  for (const { copy, kept } of [withoutJournal('all-keys', () => true), withoutJournal('one-key', (_f, i) => i === 0)]) {
    assert.ok(kept.length >= 1);
    const dataDir = path.join(dir, `restored-${path.basename(copy)}`);
    const r = await restoreCli(['--data-dir', dataDir, '--from', copy]);
    assert.equal(r.code, 1, `${copy}: ${r.out}`);
    assert.equal(r.out, '');
    assert.match(r.err, new RegExp(`the datastore holds no CA journal, but \\S+/${path.basename(copy)}/ca/keys holds ${kept.length} CA key file\\(s\\) .*restore a complete backup`));
    assert.equal(fs.existsSync(dataDir), false, 'no data dir was made');
    assert.deepEqual(stagingLeft(dir), [], 'no staging directory left');
  }
});
