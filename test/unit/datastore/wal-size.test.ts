/**
 * The -wal file after a burst of writes: SQLite reuses it without a journal_size_limit, so it kept the size of the
 * largest transaction it ever held; with one, a checkpoint's reset cuts it back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { WAL_SIZE_LIMIT_BYTES } from '../../../src/server/datastore/sqlite-open.js';
import { entry, sels, withDatastore } from './fixture.js';

test('the -wal file grown by a burst (a bulk import in one batch) is cut back to the limit by the next write after its checkpoint', async () => {
  await withDatastore(async ({ ds, file }) => {
    const walSize = (): number => fs.statSync(`${file}-wal`).size;
    const burst = Array.from({ length: 30_000 }, (_, i) => entry({ spiffeId: `spiffe://example.org/w${i}`, selectors: sels(`unix:uid:${i}`) }));
    await ds.createEntries(burst);
    const afterBurst = walSize();
    assert.ok(afterBurst > 2 * WAL_SIZE_LIMIT_BYTES, `the burst grew the -wal file well past the limit (${afterBurst} bytes)`);

    // The burst's commit ran the auto-checkpoint; the next write starts the log over and truncates the file.
    await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/after' })]);
    const afterNextWrite = walSize();
    assert.ok(afterNextWrite <= WAL_SIZE_LIMIT_BYTES, `-wal file ${afterBurst} bytes after the burst, ${afterNextWrite} bytes after the next write`);
  });
});
