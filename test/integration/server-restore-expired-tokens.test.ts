/**
 * What a restore reports voided (RestoreResult.voidedJoinTokens, the "Voided N unused join tokens" line): the backup's
 * join tokens that could still have attested an agent, not those already expired by the time of the restore; every
 * one of them is gone from the restored datastore all the same. The restore runs in process, on the clock of a
 * restore made ten minutes after the backup (restoreDataDir takes one); the backup is a real server's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FakeClock } from '../../src/common/clock.js';
import { restoreDataDir } from '../../src/server/backup/data-dir-restore.js';
import { checkRestoreSource } from '../../src/server/backup/restore-source.js';
import { checkRestoreTarget } from '../../src/server/backup/restore-target.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { joinToken } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

test("a restore counts as voided only the backup's join tokens still unexpired at its time, and keeps none of them", { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-restore-expired-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  await joinToken(live, ['--ttl', '1m']);
  await joinToken(live, ['--ttl', '1h']);
  await joinToken(live, ['--ttl', '1h']);
  const backup = path.join(dir, 'backup');
  const written = await live.cli(['backup', '--out', backup]);
  assert.equal(written.code, 0, written.err);
  assert.equal(await live.stop(), 0);

  // Ten minutes after the backup: the 1 m token has expired, the 1 h ones have not.
  const clock = new FakeClock(Date.now() + 10 * 60_000);
  const restored = await restoreDataDir(checkRestoreSource(backup), checkRestoreTarget(path.join(dir, 'restored')), clock);
  assert.equal(restored.voidedJoinTokens, 2, 'the two that could still attest an agent; the expired one put nothing at risk');
  const db = new Database(path.join(dir, 'restored', 'datastore.sqlite3'), { readonly: true });
  try {
    assert.deepEqual(db.prepare('SELECT COUNT(*) AS n FROM join_tokens').get(), { n: 0 }, 'the expired one is deleted too');
  } finally {
    db.close();
  }
});
