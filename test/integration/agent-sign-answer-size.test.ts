/**
 * A SignX509Svids answer is bounded by gRPC's default 4 MiB receive limit, which the agent's channel keeps. DNS names
 * have no count limit, and a batch of entries with many long ones used to go in one call whose answer passed it: the
 * call failed with RESOURCE_EXHAUSTED and was retried as it was, for ever, and none of those entries got an SVID. The
 * agent now bounds each call by the answer's expected size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, startCluster } from '../support/cluster.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

const ENTRIES = 40;
/** ~124 KB of DNS names an entry: the 40 chains come to some 5 MB, past the limit in one call. */
const NAMES_PER_ENTRY = 2000;

const dnsNames = (entry: number): string[] =>
  Array.from({ length: NAMES_PER_ENTRY }, (_, i) => `host-${String(i).padStart(5, '0')}-of-entry-${String(entry).padStart(3, '0')}.svc.example.org`.padEnd(60, 'x'));

test('entries whose chains add up past 4 MiB are all re-signed after a taint: the agent signs them in calls whose answers fit', async (t) => {
  const cluster = await startCluster('meshid-sign-answer-');
  teardown(t).after(() => cluster.cleanup());
  const uid = process.getuid!();
  // Also creates the node alias the others hang off.
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/plain', selectors: [`unix:uid:${uid}`] });
  for (let i = 0; i < ENTRIES; i++) {
    // Two of them for this process, to read through the Workload API; the rest for a workload that is not running
    // (the agent signs every entry it holds, as SPIRE's does).
    const selectors = i < 2 ? [{ type: 'unix', value: `uid:${uid}` }] : [{ type: 'unix', value: `uid:${uid}` }, { type: 'unix', value: 'gid:4000000000' }];
    const r = await cluster.admin.call('Entries', 'CreateEntries', {
      entries: [{ spiffe_id: `spiffe://example.org/many-names/${i}`, parent_id: Cluster.nodeAlias, selectors, dns_names: dnsNames(i) }],
    });
    assert.equal(r.results?.[0]?.status?.code ?? 0, 0, JSON.stringify(r.results?.[0]?.status));
  }
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });

  // The first X.509 message waits for all of this process's SVIDs; with the oversized call it never came.
  const workload = agent.client(60_000);
  teardown(t).after(() => workload.close());
  const { svids } = await workload.fetchX509Svid();
  assert.deepEqual(svids.map((s) => s.spiffe_id).sort(), ['spiffe://example.org/many-names/0', 'spiffe://example.org/many-names/1', 'spiffe://example.org/plain']);
  const issued = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const m of agent.output().matchAll(/"spiffeId":"spiffe:\/\/example\.org\/many-names\/(\d+)"[^\n]*"msg":"X509-SVID issued"/g)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    return counts;
  };
  const allIssued = (times: number): true | undefined => ([...issued().values()].filter((n) => n >= times).length === ENTRIES ? true : undefined);
  // The first signing goes as the Sync messages come (each at most 1 MiB of entries), in calls small enough anyway.
  await until(`X509-SVIDs for all ${ENTRIES} entries with many DNS names`, () => allIssued(1));

  // A taint re-signs every SVID at once: the whole set goes to the server together.
  const list = await cluster.admin.call('Authorities', 'ListAuthorities', {});
  const root = (list.authorities ?? []).find((a) => a.kind === 'root' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: root.id! });
  await agent.waitForLog(/authorities were tainted/);
  await until(`new X509-SVIDs for all ${ENTRIES} entries after the taint`, () => allIssued(2));
  assert.doesNotMatch(agent.output(), /larger than max/);
});
