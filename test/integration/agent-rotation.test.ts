/**
 * Rotation on an injected clock: an in-process MeshidServer and MeshidAgent share one FakeClock, so half an SVID
 * lifetime passes in one `advance()`. The clock starts 20 hours in the past: every certificate then lies inside the
 * real-time validity window that the TLS layer (which reads the real clock) checks, before and after the advance.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { connectWorkloadApi, type WorkloadApiClient } from '../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { FakeClock } from '../../src/common/clock.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { event } from '../support/event.js';
import { until } from '../support/until.js';

const HOUR = 3_600_000;
const uid = process.getuid!();
const clock = new FakeClock(Date.now() - 20 * HOUR);
let cluster: Cluster;
let agent: MeshidAgent;
let client: WorkloadApiClient;
let socketPath: string;

const serialOf = (m: X509SvidResponse, spiffeId: string): string | undefined => {
  const svid = m.svids?.find((s) => s.spiffe_id === spiffeId);
  return svid ? parseCertificate(splitConcatenatedDer(svid.x509_svid!)[0]!).serialHex : undefined;
};

/**
 * The renewals the agent has started and not finished: its own SVID's (AgentIdentity.renewing) and the workload SVIDs'
 * SignX509Svids calls (SvidIssuer.calls). Private state, read by the test: the agent exposes no other sign of a renewal
 * before its answer arrives.
 */
function renewalsUnderWay(): { agentSvid: boolean; signingCalls: number } {
  const internals = agent as unknown as { identity: { renewing: boolean }; issuer: { calls: number } };
  return { agentSvid: internals.identity.renewing, signingCalls: internals.issuer.calls };
}

/** The next message of `watch` that `wanted` accepts, the stream staying open; bounded (event()). */
function nextMessageWhere(watch: AsyncIterator<X509SvidResponse>, what: string, wanted: (m: X509SvidResponse) => boolean): Promise<X509SvidResponse> {
  return event(
    what,
    (async () => {
      for (;;) {
        const r = await watch.next();
        assert.equal(r.done, false, 'the workload stream stays open');
        if (wanted(r.value)) return r.value;
      }
    })(),
    20_000,
  );
}

before(async () => {
  cluster = await startInProcessCluster(clock, 'meshid-agent-rotation-');
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/rotating', selectors: [`unix:uid:${uid}`] });
  socketPath = path.join(cluster.dir, 'agent-socket', 'api.sock');
  // random 0.5 → zero jitter: renewals fall exactly at half-life.
  agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: socketPath, data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, random: () => 0.5 },
  );
  await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));
  client = connectWorkloadApi(socketPath);
});

after(async () => {
  client?.close();
  await cluster?.cleanup();
});

test('at half-life the workload SVID and the agent SVID are renewed; the open workload stream gets the new SVID and never notices the agent renewal', async () => {
  const watch = client.watchX509Svids();
  try {
    const first = (await event('the first FetchX509SVID message', watch.next())).value as X509SvidResponse;
    const firstSerial = serialOf(first, 'spiffe://example.org/rotating')!;
    const agentSvidBefore = agent.status().agentSvidExpiresAt!;

    // A renewal starts on the agent's clock: the FakeClock runs every timer that falls due inside advance(), and a due
    // renewal is under way when the timer returns (the agent SVID's renew() marks itself renewing before its first
    // await; the issuer counts its SignX509Svids call before sending it). So what is under way right after advance()
    // returns is every renewal that clock time made due: no real time to wait for, nothing left to happen later.
    assert.deepEqual(renewalsUnderWay(), { agentSvid: false, signingCalls: 0 }, 'nothing renewing before the advance');
    clock.advance(12 * HOUR - 60_000);
    assert.deepEqual(renewalsUnderWay(), { agentSvid: false, signingCalls: 0 }, 'nothing is renewed before half-life');
    assert.equal(agent.status().agentSvidExpiresAt, agentSvidBefore, 'nothing is renewed before half-life');

    clock.advance(2 * HOUR);
    // The same look sees both renewals start once half-life has passed: it would have seen an early one.
    assert.deepEqual(renewalsUnderWay(), { agentSvid: true, signingCalls: 1 }, 'both renewals under way after half-life');
    let next = await nextMessageWhere(watch, 'a FetchX509SVID message with the renewed workload SVID', (m) => serialOf(m, 'spiffe://example.org/rotating') !== firstSerial);
    const leaf = parseCertificate(splitConcatenatedDer(next.svids![0]!.x509_svid!)[0]!);
    assert.equal(leaf.notBefore > parseCertificate(splitConcatenatedDer(first.svids![0]!.x509_svid!)[0]!).notBefore, true, 'a newly issued SVID');
    assert.notDeepEqual(next.svids![0]!.x509_svid_key, first.svids![0]!.x509_svid_key, 'on a new key');

    await until('the agent SVID renewal', () => (agent.status().agentSvidExpiresAt! > agentSvidBefore ? true : undefined));
    // The Sync stream moved to the renewed identity: a new entry still arrives on the same workload stream.
    await until('the Sync stream back in sync', () => (agent.status().state === 'synced' ? true : undefined));
    await cluster.createEntry({ spiffeId: 'spiffe://example.org/after-renewal', selectors: [`unix:uid:${uid}`] });
    next = await nextMessageWhere(watch, 'a FetchX509SVID message with the entry created after the agent renewal', (m) => m.svids!.some((s) => s.spiffe_id === 'spiffe://example.org/after-renewal'));
  } finally {
    watch.cancel();
  }
});

test('a JWT-SVID is served from the cache until half its lifetime has passed, then re-minted', async () => {
  const a = await client.fetchJwtSvid(['billing']);
  const token = (r: typeof a): string => r.svids!.find((s) => s.spiffe_id === 'spiffe://example.org/rotating')!.svid!;
  clock.advance(149_000); // default JWT-SVID TTL 5 min: half is 150 s
  assert.equal(token(await client.fetchJwtSvid(['billing'])), token(a));
  clock.advance(2_000);
  const c = await client.fetchJwtSvid(['billing']);
  assert.notEqual(token(c), token(a));
  const validated = await client.validateJwtSvid('billing', token(c));
  assert.equal(validated.spiffeId, 'spiffe://example.org/rotating');
});
