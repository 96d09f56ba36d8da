/**
 * Child process for the agent state crash test: rewrites the agent state in its data dir as fast as it can, each
 * version self-describing (revision r: every entry carries revision r, and there are 1500 + 500·(r mod 3) of them),
 * and prints each revision after its write returned. The parent kills it with SIGKILL at arbitrary moments, during
 * compactions too.
 */
import { AgentStore } from '../../src/agent/storage/agent-store.js';
import { entryFromMessage } from '../../src/agent/cache/agent-entry.js';
import { silentLogger } from '../../src/common/log.js';

const dataDir = process.argv[2]!;
const store = AgentStore.open(dataDir, silentLogger());
const bundle = { trustDomain: 'example.org', x509Authorities: [], jwtAuthorities: [], sequence: 1 };

const entryCount = (revision: number): number => 1500 + 500 * (revision % 3);

for (let r = 1; ; r++) {
  const entries = Array.from({ length: entryCount(r) }, (_, i) =>
    entryFromMessage({ id: `e-${i}`, spiffe_id: `spiffe://example.org/w/${i}`, selectors: [{ type: 'unix', value: `uid:${i}` }], revision: r, created_at: 1 }),
  );
  store.saveState({ trustDomain: 'example.org', revision: r, bundle, federatedBundles: [], entries, svids: [] });
  process.stdout.write(`${r}\n`);
  // A turn of the event loop between saves, as the agent has: a compaction (the snapshot rewritten once the journal
  // has outgrown it) goes on between them, so a kill also lands in one.
  await new Promise((resolve) => setImmediate(resolve));
}
