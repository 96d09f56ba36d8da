/**
 * The change feed's reset answer at many entries: the CPU time of one listEntryChangesSince(0) answered with a reset
 * (every entry, one read transaction), in a fresh process. `node dist/bench/change-feed-reset.js <file>`: a file that
 * does not exist yet is first filled with RESET_ENTRIES entries (default 100,000, as bench/server-start.ts fills them)
 * and one deleted entry whose tombstone is pruned, so that revision 0 is behind the pruning watermark; run it again on
 * the same file for each measure. Prints the CPU ms (user + system, process.cpuUsage). Not part of `npm run bench`.
 */
import fs from 'node:fs';
import { systemClock } from '../src/common/clock.js';
import { parseSelector } from '../src/common/spiffe/selector.js';
import { openSqliteDatastore } from '../src/server/datastore/sqlite-datastore.js';
import { createManyEntries } from './many-entries.js';

const ENTRIES = Number(process.env['RESET_ENTRIES'] ?? 100_000);
const PARENTS = 2_000;
const file = process.argv[2];
if (file === undefined) throw new Error('usage: change-feed-reset.js <datastore file>');
const filling = !fs.existsSync(file);

const ds = await openSqliteDatastore({ file, clock: systemClock });
try {
  if (filling) {
    await createManyEntries(ds, ENTRIES, PARENTS);
    const [gone] = await ds.createEntries([{
      spiffeId: 'spiffe://example.org/gone', parentId: 'spiffe://example.org/meshid/agent/east/a0', selectors: [parseSelector('unix:uid:1')],
      x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, dnsNames: [], hint: '', federatesWith: [], admin: false, downstream: false,
    }]);
    await ds.deleteEntries([gone!.entry!.id]);
    await ds.pruneEntryTombstones(Date.now() + 1);
  }
  const before = process.cpuUsage();
  const changes = await ds.listEntryChangesSince(0);
  const used = process.cpuUsage(before);
  if (!changes.reset || changes.entries.length !== ENTRIES) throw new Error(`expected a reset with ${ENTRIES} entries`);
  process.stdout.write(`${((used.user + used.system) / 1000).toFixed(0)}\n`);
} finally {
  await ds.close();
}
