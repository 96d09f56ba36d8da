/**
 * The entries the datastore benchmarks start from (server-start.ts, change-feed-reset.ts): `count` workload entries,
 * one uid selector each, spread over `parents` agents of datacenter east, created 1,000 per batch.
 */
import { parseSelector } from '../src/common/spiffe/selector.js';
import type { SqliteDatastore } from '../src/server/datastore/sqlite-datastore.js';

export async function createManyEntries(ds: SqliteDatastore, count: number, parents: number): Promise<void> {
  for (let done = 0; done < count; done += 1_000) {
    await ds.createEntries(
      Array.from({ length: Math.min(1_000, count - done) }, (_, k) => {
        const i = done + k;
        return {
          spiffeId: `spiffe://example.org/w${i}`,
          parentId: `spiffe://example.org/meshid/agent/east/a${i % parents}`,
          selectors: [parseSelector(`unix:uid:${10_000 + i}`)],
          x509SvidTtlSeconds: 3600,
          jwtSvidTtlSeconds: 300,
          dnsNames: [],
          hint: '',
          federatesWith: [],
          admin: false,
          downstream: false,
        };
      }),
    );
  }
}
