/**
 * A real meshid-server and meshid-agent; this test process is a workload holding many identities, as a node-wide
 * uid can (Istio runs every sidecar of a node as one uid).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { Cluster, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';

const uid = process.getuid!();
const IDS = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/many/id-${i}`);
let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-many-identities-', IDS));
});

after(async () => {
  await cluster?.cleanup();
});

/** The agent's log lines (JSON, one a line) and anything else it wrote among them. */
function outputLines(): { json: Array<Record<string, unknown>>; other: string[] } {
  const json: Array<Record<string, unknown>> = [];
  const other: string[] = [];
  for (const line of agent.output().split('\n')) {
    if (line === '') continue;
    try {
      json.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      other.push(line);
    }
  }
  return { json, other };
}

test('FetchJWTSVID for a caller of twelve identities signs them all and the agent writes only JSON log lines (no Node listener warning)', async () => {
  const client = agent.client();
  try {
    for (const audience of ['aud-one', 'aud-two']) {
      const res = await client.fetchJwtSvid([audience]);
      assert.deepEqual(res.svids.map((s) => s.spiffe_id).sort(), [...IDS].sort());
    }
  } finally {
    client.close();
  }
  assert.deepEqual(outputLines().other, [], 'every line on the agent\'s stderr is a JSON log line');
});

test('an identity whose hint repeats an older entry\'s is left out of FetchX509SVID and FetchJWTSVID, and the agent says which', async () => {
  const older = await cluster.createEntry({ spiffeId: 'spiffe://example.org/twin/older', selectors: [`unix:uid:${uid}`], hint: 'edge' });
  const newer = await cluster.createEntry({ spiffeId: 'spiffe://example.org/twin/newer', selectors: [`unix:uid:${uid}`], hint: 'edge' });
  const client = agent.client();
  try {
    // The agent hears of both entries over its Sync stream: asked for by name, the newer one's token comes once it has.
    for (let attempt = 0; ; attempt++) {
      const asked = await client.fetchJwtSvid(['aud-twin'], 'spiffe://example.org/twin/newer').catch(() => undefined);
      if (asked !== undefined) break;
      assert.ok(attempt < 100, 'the agent never heard of the newer entry');
      await new Promise((r) => setTimeout(r, 100));
    }
    const jwt = await client.fetchJwtSvid(['aud-twin']);
    // A new stream's first message waits until every entry of the caller has its SVID.
    const x509 = await client.fetchX509Svid();
    for (const served of [jwt.svids, x509.svids] as Array<Array<{ spiffe_id: string; hint?: string }>>) {
      const twins = served.filter((s) => s.spiffe_id.startsWith('spiffe://example.org/twin/'));
      assert.deepEqual(twins.map((s) => [s.spiffe_id, s.hint]), [['spiffe://example.org/twin/older', 'edge']]);
    }
  } finally {
    client.close();
    await cluster.deleteEntry(newer);
    await cluster.deleteEntry(older);
  }
  const warned = outputLines().json.filter((l) => l['level'] === 40 && l['spiffeId'] === 'spiffe://example.org/twin/newer' && l['hint'] === 'edge');
  assert.deepEqual(warned.map((l) => l['rpc']).sort(), ['FetchJWTSVID', 'FetchX509SVID'], agent.output().slice(-2000));
  assert.match(String(warned[0]!['msg']), /already that of spiffe:\/\/example\.org\/twin\/older/);
});

test('an X509SVIDResponse over the 4 MiB clients take by default: a default client fails RESOURCE_EXHAUSTED, and the agent logs why', async () => {
  // ~1.7 KB per SVID (P-256 chain, PKCS#8 key, the bundle): 2,600 make ~4.4 MB.
  const entries = Array.from({ length: 2600 }, (_, i) => ({
    spiffe_id: `spiffe://example.org/bulk/w${i}`,
    parent_id: Cluster.nodeAlias,
    selectors: [{ type: 'unix', value: `uid:${uid}` }],
  }));
  for (let i = 0; i < entries.length; i += 500) {
    const r = await cluster.admin.call('Entries', 'CreateEntries', { entries: entries.slice(i, i + 500) });
    assert.ok(r.results!.every((x) => (x.status?.code ?? 0) === 0), JSON.stringify(r.results?.find((x) => (x.status?.code ?? 0) !== 0)));
  }
  const Client = serviceClient(loadProto('workload/workload.proto'), 'SpiffeWorkloadAPI');
  const first = (client: grpc.Client): Promise<{ svids?: unknown[] } | grpc.ServiceError> =>
    new Promise((resolve) => {
      const md = new grpc.Metadata();
      md.set('workload.spiffe.io', 'true');
      const call = (client as unknown as Record<string, (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<{ svids?: unknown[] }>>)['FetchX509SVID']!({}, md);
      call.on('data', (d: { svids?: unknown[] }) => {
        resolve(d);
        call.cancel();
      });
      call.on('error', (e: grpc.ServiceError) => resolve(e));
    });
  const unlimited = new Client(`unix://${agent.socketPath}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const byDefault = new Client(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  try {
    // The SVIDs are signed in batches: an external process's progress, so poll it.
    for (let attempt = 0; ; attempt++) {
      const res = await first(unlimited);
      assert.ok(!(res instanceof Error), String(res));
      if ((res.svids ?? []).length === IDS.length + entries.length) break;
      assert.ok(attempt < 120, `only ${(res.svids ?? []).length} SVIDs after ${attempt} attempts`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const refused = await first(byDefault);
    assert.ok(refused instanceof Error, 'a default client cannot take the message');
    assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED);
  } finally {
    unlimited.close();
    byDefault.close();
  }
  const line = outputLines().json.find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('larger than the 4 MiB'));
  assert.ok(line, `a warning names the oversized response:\n${agent.output().slice(-3000)}`);
  assert.equal(line['rpc'], 'FetchX509SVID');
  assert.equal(line['spiffeId'], IDS[0], 'the default identity names the workload');
  assert.ok((line['bytes'] as number) > 4 * 1024 * 1024, JSON.stringify(line));
  assert.equal(line['level'], 40, 'a warning');
});
