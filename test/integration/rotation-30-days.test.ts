/**
 * Thirty simulated days of rotation and resilience with one in-process meshid-server and meshid-agent on a shared
 * FakeClock: 24 h X.509-SVIDs (18 h for the second identity, so the two renew at different instants), 7 d
 * intermediates, one root rotation (`rotateRoot()` on day 10 at 05:00, active after root_activation_delay), and an 11 h server
 * outage on day 20. One Workload API FetchX509SVID stream and five SDS StreamSecrets streams (ACKing like Envoy) are
 * opened once and stay open throughout; at every sampled hour each one's latest SVID must be valid at `clock.now()`
 * and verify against the bundle it came with (verifyChain every hour, `openssl verify -x509_strict -attime` at a
 * sample of instants, densely around the root rotation).
 *
 * The agent API is mTLS and node:tls judges certificate validity on the real clock, which here is years away from
 * the simulated one: judgeTlsOnClock makes TLS in this process judge validity on the FakeClock (chains are still
 * verified in full, see test/support/fake-clock-tls.ts). Workload-to-workload mTLS is checked with openssl at the
 * simulated instant, both directions, since node:tls could not be told the time.
 *
 * The tests run in order on one timeline: each continues where the previous one stopped.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import path from 'node:path';
import tls from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import type { CaManager } from '../../src/server/ca/ca-manager.js';
import { connectWorkloadApi, type WorkloadApiClient, type WorkloadWatch } from '../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { FakeClock } from '../../src/common/clock.js';
import { renewalTime } from '../../src/common/rotation.js';
import { parseCertificate, type ParsedCertificate } from '../../src/common/x509/certificate.js';
import { verifyChain } from '../../src/common/x509/chain-verification.js';
import { keyMatchesCertificate } from '../../src/common/x509/keys.js';
import { certificatesToPem, pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startInProcessCluster } from '../support/cluster.js';
import { EnvoySidecar } from '../support/envoy-sidecar.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { startInProcessServer, stopInProcessServer, type InProcessCluster } from '../support/in-process-restart.js';
import { opensslVerify } from '../support/openssl.js';
import {
  connectSds, dataSourceText, envoyNode, fetchSecrets, SECRET_TYPE_URL, secretsByName, spiffeTrustDomains, type DiscoveryResponse,
} from '../support/sds-client.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const A = 'spiffe://example.org/rotation/a';
const B = 'spiffe://example.org/rotation/b';
const uid = process.getuid!();

const clock = new FakeClock(Date.UTC(2030, 0, 1));
const t0 = clock.now();
let restoreTls: (() => void) | undefined;
let cluster: InProcessCluster;
let agent: MeshidAgent;
let client: WorkloadApiClient;
let sds: grpc.Client;
let closing = false;
let serverUp = true;

/** The latest X509SVIDResponse of the one Workload API stream, by SPIFFE ID. */
interface ServedSvid {
  chain: Buffer[];
  bundle: Buffer[];
  leaf: ParsedCertificate;
}
let watch: WorkloadWatch<X509SvidResponse>;
let served = new Map<string, ServedSvid>();
let defaultId = '';
let workloadMessages = 0;
/** Every SVID (serial) the Workload API stream delivered, per identity, with the simulated instant it arrived. */
const issued = new Map<string, Array<{ serial: string; at: number }>>([[A, []], [B, []]]);
/** Every distinct own-bundle content the Workload API stream delivered. */
const bundlesSeen: string[] = [];
const intermediatesSeen = new Set<string>();
const faults: string[] = [];

/** A's SVID of day 0, long expired at the end. */
let firstA: { chain: Buffer[]; keyPem: string };
let envoyDefault: EnvoySidecar;
let envoyA: EnvoySidecar;
let envoyB: EnvoySidecar;
let onlyA: EnvoySidecar;
let onlyB: EnvoySidecar;
const sidecars = (): EnvoySidecar[] => [envoyDefault, envoyA, envoyB, onlyA, onlyB];

const iso = (ms: number): string => new Date(ms).toISOString();
const day = (ms: number = clock.now()): string => `day ${((ms - t0) / DAY).toFixed(2)}`;
const bundleKey = (roots: readonly Buffer[]): string => roots.map((r) => r.toString('base64')).sort().join(',');
const serialOf = (chain: readonly Buffer[] | undefined): string | undefined => (chain === undefined ? undefined : parseCertificate(chain[0]!).serialHex);

function receiveWorkload(m: X509SvidResponse): void {
  workloadMessages++;
  const now = clock.now();
  const next = new Map<string, ServedSvid>();
  for (const svid of m.svids ?? []) {
    const id = svid.spiffe_id ?? '';
    const chain = splitConcatenatedDer(svid.x509_svid!);
    const bundle = splitConcatenatedDer(svid.bundle!);
    const leaf = parseCertificate(chain[0]!);
    try {
      verifyChain(chain, bundle, now, { requireEndEntity: true });
    } catch (err) {
      faults.push(`Workload API message ${workloadMessages}, ${id} at ${day(now)}: ${(err as Error).message}`);
    }
    if (!keyMatchesCertificate(createPrivateKey({ key: svid.x509_svid_key!, format: 'der', type: 'pkcs8' }), chain[0]!)) {
      faults.push(`Workload API message ${workloadMessages}: the key of ${id} does not match its leaf`);
    }
    const history = issued.get(id);
    if (history !== undefined && history.at(-1)?.serial !== leaf.serialHex) history.push({ serial: leaf.serialHex, at: now });
    const key = bundleKey(bundle);
    if (bundlesSeen.at(-1) !== key) bundlesSeen.push(key);
    intermediatesSeen.add(parseCertificate(chain[1]!).fingerprintSha256);
    next.set(id, { chain, bundle, leaf });
  }
  defaultId = m.svids?.[0]?.spiffe_id ?? '';
  served = next;
}

async function pumpWorkload(): Promise<void> {
  try {
    for await (const m of watch) receiveWorkload(m);
    if (!closing) faults.push('the Workload API stream ended');
  } catch (err) {
    if (!closing) faults.push(`the Workload API stream failed: ${(err as Error).message}`);
  }
}

/** Waits for the agent's pushes (network I/O, not time logic), polling briefly with a generous real-time bound. */
async function until(what: string, probe: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) {
      const streams = envoyDefault === undefined ? 'not open yet' : `not settled: ${unsettled(true).join('; ')}`;
      const problems = [...faults, ...(envoyDefault === undefined ? [] : sidecars().flatMap((x) => x.faults))];
      throw new Error(`timed out at ${day()} waiting for ${what}; agent ${JSON.stringify(agent.status())}; streams ${streams}; faults: ${problems.join('; ')}`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * Why the streams are not yet where the agent should have brought them at this instant: an SVID past its renewal
 * time (strict only; zero jitter, so renewal is due exactly at half-life), an agent SVID close to its renewal, or an
 * SDS stream holding something other than what the Workload API stream holds.
 */
function unsettled(strict: boolean): string[] {
  const now = clock.now();
  const why: string[] = [];
  const a = served.get(A);
  const b = served.get(B);
  if (a === undefined || b === undefined) return ['the Workload API stream does not serve both identities yet'];
  if (strict) {
    for (const [id, s] of served) if (renewalTime(s.leaf, 0) <= now) why.push(`${id} is past its renewal time`);
    // The agent SVID (24 h) renews at half-life; a renewal up to an hour late is still in flight, not a failure.
    if ((agent.status().agentSvidExpiresAt ?? 0) - now <= 11 * HOUR) why.push('the agent SVID is not renewed');
  }
  const bundle = bundleKey(a.bundle);
  if (caDecisions > 0) why.push('a CA decision is being applied');
  if (serverUp && bundle !== bundleKey(cluster.meshidServer.ca.bundle().x509Authorities)) why.push("the Workload API stream lags on the server's bundle");
  const want: Array<[EnvoySidecar, string, string | undefined]> = [
    [envoyDefault, 'default', defaultId],
    [envoyA, A, A],
    [envoyB, B, B],
    [onlyA, A, A],
    [onlyB, B, B],
  ];
  for (const [sidecar, name, id] of want) {
    if (serialOf(sidecar.chain(name)) !== serialOf(served.get(id ?? '')?.chain)) why.push(`SDS ${sidecar.names.join('+')} lags on ${name}`);
    if (sidecar.names.includes('ROOTCA')) {
      const roots = sidecar.roots('ROOTCA');
      if (roots === undefined || bundleKey(roots) !== bundle) why.push(`SDS ${sidecar.names.join('+')} lags on ROOTCA`);
    }
  }
  return why;
}

function verifies(chain: readonly Buffer[] | undefined, roots: readonly Buffer[] | undefined, what: string): void {
  assert.ok(chain !== undefined && roots !== undefined, `${what}: nothing received`);
  try {
    verifyChain(chain, roots, clock.now(), { requireEndEntity: true });
  } catch (err) {
    assert.fail(`${what} at ${day()} (${iso(clock.now())}): ${(err as Error).message}`);
  }
}

function opensslVerifies(chain: readonly Buffer[], roots: readonly Buffer[], what: string, purpose?: 'sslserver' | 'sslclient'): void {
  const r = opensslVerify({ roots: [...roots], intermediates: chain.slice(1), leaf: chain[0]!, atTime: clock.now(), ...(purpose ? { purpose } : {}) });
  assert.ok(r.ok, `${what}: openssl verify -x509_strict -attime ${iso(clock.now())}${purpose ? ` -purpose ${purpose}` : ''}:\n${r.output}`);
}

/**
 * CA decisions in flight. The CA decides on its own FakeClock timers and applies each decision asynchronously
 * (datastore, key files); the test must not move the clock on while one is being applied, or the next decision would
 * be timed from a stale instant. Counting calls of the public rotateNow (which the CA's timer goes through) tells.
 */
let caDecisions = 0;
function countCaDecisions(ca: CaManager): void {
  const rotateNow = ca.rotateNow.bind(ca);
  ca.rotateNow = async (action) => {
    caDecisions++;
    try {
      return await rotateNow(action);
    } finally {
      caDecisions--;
    }
  };
}

let samples = 0;
let opensslSamples = 0;

/**
 * The invariants at this instant: no stream failed or misbehaved; every latest SVID verifies, at `clock.now()`,
 * against the bundle received with it (Workload API: the same message; SDS: the ROOTCA secret of the same stream);
 * workload A's chain verifies against B's trust bundle and B's against A's (the two halves of their mTLS).
 */
function checkNow(opts: { openssl?: boolean } = {}): void {
  assert.deepEqual(faults, []);
  for (const s of sidecars()) assert.deepEqual(s.faults, [], `SDS ${s.names.join('+')}`);
  for (const [id, s] of served) verifies(s.chain, s.bundle, `Workload API SVID ${id}`);
  verifies(envoyDefault.chain('default'), envoyDefault.roots('ROOTCA'), 'SDS default against ROOTCA');
  verifies(envoyA.chain(A), envoyA.roots('ROOTCA'), 'SDS A against its ROOTCA');
  verifies(envoyB.chain(B), envoyB.roots('ROOTCA'), 'SDS B against its ROOTCA');
  verifies(onlyA.chain(A), served.get(A)?.bundle, 'SDS A-only stream');
  verifies(onlyB.chain(B), served.get(B)?.bundle, 'SDS B-only stream');
  verifies(envoyA.chain(A), envoyB.roots('ROOTCA'), "workload A's chain against B's bundle");
  verifies(envoyB.chain(B), envoyA.roots('ROOTCA'), "workload B's chain against A's bundle");
  samples++;
  if (!opts.openssl) return;
  opensslSamples++;
  for (const [id, s] of served) opensslVerifies(s.chain, s.bundle, `Workload API SVID ${id}`);
  opensslVerifies(envoyDefault.chain('default')!, envoyDefault.roots('ROOTCA')!, 'SDS default against ROOTCA');
  const [chainA, chainB, rootsA, rootsB] = [envoyA.chain(A)!, envoyB.chain(B)!, envoyA.roots('ROOTCA')!, envoyB.roots('ROOTCA')!];
  // A serves, B connects (B checks A as a server, A checks B as a client), and the other way round.
  opensslVerifies(chainA, rootsB, 'A as TLS server, checked by B', 'sslserver');
  opensslVerifies(chainB, rootsA, 'B as TLS client, checked by A', 'sslclient');
  opensslVerifies(chainB, rootsA, 'B as TLS server, checked by A', 'sslserver');
  opensslVerifies(chainA, rootsB, 'A as TLS client, checked by B', 'sslclient');
}

/** Moves the clock, then lets every callback the timers started begin its work (the CA's decisions among them). */
async function advance(ms: number): Promise<void> {
  clock.advance(ms);
  await new Promise((r) => setImmediate(r));
}

/** Moves the clock one hour at a time up to `target`, waiting at each hour for the agent's pushes, then checking. */
async function hourlyUntil(target: number, opensslAt: (now: number) => boolean = (now) => (now - t0) % (6 * HOUR) === 0, each?: () => Promise<void> | void): Promise<void> {
  while (clock.now() < target) {
    await advance(Math.min(HOUR, target - clock.now()));
    await until('the agent to renew and push', () => unsettled(true).length === 0);
    checkNow({ openssl: opensslAt(clock.now()) });
    await each?.();
  }
}

before(async () => {
  restoreTls = judgeTlsOnClock(clock);
  cluster = await startInProcessCluster(clock, 'meshid-rotation-30d-');
  countCaDecisions(cluster.meshidServer.ca);
  await cluster.createEntry({ spiffeId: A, selectors: [`unix:uid:${uid}`], x509SvidTtl: 24 * 3600 });
  await cluster.createEntry({ spiffeId: B, selectors: [`unix:uid:${uid}`], x509SvidTtl: 18 * 3600 });
  const socketPath = path.join(cluster.dir, 'agent-socket', 'api.sock');
  // random 0.5 → zero jitter: every renewal falls exactly at half-life.
  agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: socketPath, data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, random: () => 0.5 },
  );
  // Streams opened before the first sync would be refused (UNAVAILABLE: nothing to serve yet).
  await until('the first sync', () => agent.status().state === 'synced' && agent.status().svids === 2);
  client = connectWorkloadApi(socketPath);
  watch = client.watchX509Svids();
  void pumpWorkload();
  sds = connectSds(socketPath);
  const node = (id: string): Record<string, unknown> => envoyNode(id, { cluster: 'rotation-30-days' });
  envoyDefault = new EnvoySidecar(sds, ['default', 'ROOTCA'], node('envoy-default'));
  envoyA = new EnvoySidecar(sds, [A, 'ROOTCA'], node('envoy-a'));
  envoyB = new EnvoySidecar(sds, [B, 'ROOTCA'], node('envoy-b'));
  onlyA = new EnvoySidecar(sds, [A], node('only-a'));
  onlyB = new EnvoySidecar(sds, [B], node('only-b'));
  await until('every stream to receive both identities', () => unsettled(true).length === 0);
  firstA = { chain: envoyA.chain(A)!, keyPem: envoyA.privateKeyPem(A)! };
});

after(async () => {
  closing = true;
  for (const s of cluster ? sidecars() : []) s?.close();
  watch?.cancel();
  client?.close();
  sds?.close();
  await cluster?.cleanup();
  restoreTls?.();
});

test('days 0–10: at every sampled hour the open Workload API and SDS streams hold SVIDs valid at that instant whose chains verify against the bundle they came with, across SVID and intermediate rotations', async () => {
  checkNow({ openssl: true });
  const intermediatesAtStart = intermediatesSeen.size;
  await hourlyUntil(t0 + 10 * DAY);
  assert.equal(samples, 1 + 10 * 24);
  // 24 h SVIDs renew every 12 h, 18 h ones every 9 h: all of it reached the streams.
  assert.ok(issued.get(A)!.length >= 20, `A renewed ${issued.get(A)!.length - 1} times`);
  assert.ok(issued.get(B)!.length >= 26, `B renewed ${issued.get(B)!.length - 1} times`);
  assert.ok(intermediatesSeen.size >= intermediatesAtStart + 2, `served chains moved across ${intermediatesSeen.size} intermediates`);
  assert.equal(bundlesSeen.length, 1, 'no root change yet');
});

let oldRoot: Buffer;
let newRoot: Buffer;
const chainsTo = (chain: readonly Buffer[], root: Buffer): boolean => {
  try {
    verifyChain(chain, [root], clock.now());
    return true;
  } catch {
    return false;
  }
};

test('root rotation (rotateRoot on day 10, 05:00): the new root is published before anything chains to it, the workloads move onto it at different times and keep verifying each other in both directions throughout, including while one is on the old root and the other on the new', async (t) => {
  // Off the 12 h grid the JWT keys rotate on: the activation then has to come from the CA's own schedule.
  await hourlyUntil(t0 + 10 * DAY + 5 * HOUR);
  const ca = cluster.meshidServer.ca;
  const before = served.get(A)!.bundle;
  assert.equal(before.length, 1);
  oldRoot = before[0]!;
  const prepared = await ca.rotateRoot();
  newRoot = prepared.certDer!;
  assert.equal(prepared.state, 'prepared');
  const activationAt = prepared.createdAt + cluster.meshidServer.config.rootActivationDelayMs;

  await until('the new root to reach every stream', () => unsettled(true).length === 0 && served.get(A)!.bundle.length === 2);
  assert.equal(bundleKey(served.get(A)!.bundle), bundleKey([oldRoot, newRoot]));
  for (const [id, s] of served) assert.ok(!chainsTo(s.chain, newRoot), `${id}: nothing chains to the new root while it is only published`);
  checkNow({ openssl: true });

  const near = (now: number, at: number): boolean => Math.abs(now - at) <= 3 * HOUR;
  const mixed: Array<{ at: number; onNew: string }> = [];
  let rootLeftAt: number | undefined;
  let activeSeen = false;
  await hourlyUntil(
    t0 + 18 * DAY,
    (now) => (now - t0) % (2 * HOUR) === 0 || near(now, activationAt) || served.get(A)!.bundle.length !== served.get(B)!.bundle.length || isMixed(),
    () => {
      const now = clock.now();
      const state = (): string | undefined => ca.listAuthorities().find((r) => r.certDer?.equals(newRoot))?.state;
      if (now >= activationAt) {
        // Decided on the CA's own timer when the delay is over, whatever else is due then.
        assert.equal(state(), 'active', `the new root is active from ${iso(activationAt)}`);
        activeSeen = true;
      } else assert.equal(state(), 'prepared', 'the new root waits root_activation_delay');
      if (isMixed()) mixed.push({ at: now, onNew: chainsTo(served.get(A)!.chain, newRoot) ? A : B });
      if (rootLeftAt === undefined && served.get(A)!.bundle.length === 1) rootLeftAt = now;
      // While anything served chains to the old root, every bundle keeps it.
      for (const [id, s] of served) {
        if (chainsTo(s.chain, oldRoot)) assert.ok(s.bundle.some((r) => r.equals(oldRoot)), `${id} chains to the old root, which its bundle dropped`);
      }
    },
  );
  t.diagnostic(`new root published ${day(prepared.createdAt)}, active ${day(activationAt)}; one workload on each root at ${mixed.map((m) => `${day(m.at)} (${m.onNew === A ? 'A' : 'B'} on the new)`).join(', ')}; old root left the bundles ${rootLeftAt === undefined ? 'never' : day(rootLeftAt)}`);
  assert.ok(activeSeen);
  assert.ok(mixed.length > 0, 'a window with one workload on the old root and the other on the new one occurred');
  const firstMixed = mixed[0]!;
  assert.ok(firstMixed.at >= activationAt, 'nothing chains to the new root before it is active');
  assert.ok(rootLeftAt !== undefined && rootLeftAt > mixed.at(-1)!.at, 'the old root left the bundles, after both workloads had moved');
  for (const [id, s] of served) assert.ok(chainsTo(s.chain, newRoot), `${id} is on the new root`);
  assert.equal(bundleKey(served.get(A)!.bundle), bundleKey([newRoot]));
  assert.deepEqual(
    bundlesSeen.slice(-3),
    [bundleKey([oldRoot]), bundleKey([oldRoot, newRoot]), bundleKey([newRoot])],
    'the bundle went old → old+new → new, nothing else',
  );
});

function isMixed(): boolean {
  const a = served.get(A)!;
  const b = served.get(B)!;
  return chainsTo(a.chain, newRoot) !== chainsTo(b.chain, newRoot);
}

test('server stopped for 11 simulated hours on day 20: the workloads keep valid SVIDs and fetching works; after a restart on the same data dir the agent resyncs and the same streams receive the overdue renewals', async () => {
  await hourlyUntil(t0 + 20 * DAY);
  const messagesBefore = workloadMessages;
  const serialsBefore = new Map([...served].map(([id, s]) => [id, s.leaf.serialHex]));
  const config = await stopInProcessServer(cluster);
  serverUp = false;

  const overdue = new Set<string>();
  for (let h = 1; h <= 11; h++) {
    await advance(HOUR);
    // Nothing can be renewed now; the streams must still agree and hold SVIDs valid at this instant.
    await until('the streams to agree', () => unsettled(false).length === 0);
    checkNow({ openssl: h % 3 === 0 });
    for (const [id, s] of served) if (renewalTime(s.leaf, 0) <= clock.now()) overdue.add(id);

    const fetched = await client.fetchX509Svid();
    for (const svid of fetched.svids ?? []) {
      const chain = splitConcatenatedDer(svid.x509_svid!);
      verifies(chain, splitConcatenatedDer(svid.bundle!), `FetchX509SVID ${svid.spiffe_id} during the outage`);
      assert.equal(parseCertificate(chain[0]!).serialHex, served.get(svid.spiffe_id!)?.leaf.serialHex, 'the same SVID the stream holds');
    }
    assert.equal(fetched.svids?.length, 2);
    const secrets = secretsByName(await fetchSecrets(sds, { node: envoyNode('fetcher', { cluster: 'rotation-30-days' }), resource_names: [A, 'ROOTCA'], type_url: SECRET_TYPE_URL }));
    const roots = spiffeTrustDomains(secrets.get('ROOTCA')!)[0]!.trustBundlePem;
    verifies(
      pemToDerList(dataSourceText(secrets.get(A)?.tls_certificate?.certificate_chain)),
      pemToDerList(roots),
      'FetchSecrets A during the outage',
    );
  }
  assert.notEqual(agent.status().state, 'synced', 'the agent noticed the outage');
  assert.ok(overdue.size > 0, 'a renewal fell due during the outage, so the restart has something to deliver');
  for (const [id, serial] of serialsBefore) assert.equal(served.get(id)!.leaf.serialHex, serial, `${id} was not renewed without the server`);

  countCaDecisions((await startInProcessServer(cluster, config, clock)).ca);
  serverUp = true;
  // The agent reconnects on its own backoff (on the FakeClock): move a minute at a time until it has caught up.
  const restartedAt = clock.now();
  while (!(agent.status().state === 'synced' && unsettled(true).length === 0)) {
    assert.ok(clock.now() - restartedAt < 2 * HOUR, `the agent resynced within 2 simulated hours: ${JSON.stringify(agent.status())}; ${unsettled(true).join('; ')}`);
    await advance(60_000);
    await new Promise((r) => setTimeout(r, 20));
  }
  checkNow({ openssl: true });
  assert.ok(workloadMessages > messagesBefore, 'the same Workload API stream received the renewals');
  for (const id of overdue) assert.notEqual(served.get(id)!.leaf.serialHex, serialsBefore.get(id), `${id} renewed after the restart`);
  for (const s of [envoyA, envoyB]) assert.ok(s.updates.at(-1)!.changed.length > 0);
});

test('days 21–30: the streams opened on day 0 are still the ones serving, and every sampled instant held valid SVIDs', async (t) => {
  await hourlyUntil(t0 + 30 * DAY);
  assert.ok(clock.now() - t0 >= 30 * DAY);
  assert.deepEqual(faults, []);
  for (const s of sidecars()) {
    assert.deepEqual(s.faults, []);
    assert.equal(s.nacked.length, 0);
    assert.equal(s.acked.length, s.updates.length, 'every response ACKed on the one stream');
  }
  // 30 days of 7 d intermediates prepared at half-life: chains moved across many of them.
  assert.ok(intermediatesSeen.size >= 7, `served chains used ${intermediatesSeen.size} intermediates`);
  assert.ok(samples >= 30 * 24, `${samples} sampled instants`);
  assert.ok(opensslSamples >= 120, `${opensslSamples} instants checked with openssl`);
  t.diagnostic(
    `${samples} sampled instants (${opensslSamples} with openssl), ${workloadMessages} Workload API messages, ` +
      `${issued.get(A)!.length} SVIDs of A, ${issued.get(B)!.length} of B, ${intermediatesSeen.size} intermediates, ` +
      `SDS responses ${sidecars().map((x) => `${x.names.join('+')}: ${x.updates.length}`).join(', ')}`,
  );
});

test('a renewal is pushed only to the SDS streams that watch the renewed identity, and a bundle change only to those that watch ROOTCA', () => {
  const serials = (s: EnvoySidecar, name: string): string[] =>
    s.updates.map((u) => serialOf(secretsToChain(u.response, name))!);
  const seen = (id: string): string[] => issued.get(id)!.map((i) => i.serial);
  // One response per SVID of the watched identity: none for the other identity's renewals or the bundle changes.
  assert.deepEqual(serials(onlyA, A), seen(A));
  assert.deepEqual(serials(onlyB, B), seen(B));
  for (const u of [...onlyA.updates, ...onlyB.updates]) assert.equal(u.changed.length, 1);
  // The two identities renewed at different instants, so a push to the wrong stream could not have hidden.
  const instants = (id: string): Set<number> => new Set(issued.get(id)!.slice(1).map((i) => i.at));
  const onlyAtA = [...instants(A)].filter((t) => !instants(B).has(t));
  const onlyAtB = [...instants(B)].filter((t) => !instants(A).has(t));
  assert.ok(onlyAtA.length > 5 && onlyAtB.length > 5, `${onlyAtA.length} instants where only A renewed, ${onlyAtB.length} where only B did`);
  // Streams watching an identity and ROOTCA got exactly the changes of those two, each when it happened.
  for (const [s, id] of [[envoyA, A], [envoyB, B]] as const) {
    const rootcaChanges = s.updates.filter((u) => u.changed.includes('ROOTCA')).length;
    assert.equal(rootcaChanges, bundlesSeen.length, `${id}: one ROOTCA push per bundle change`);
    const svidChanges = s.updates.filter((u) => u.changed.includes(id)).length;
    assert.equal(svidChanges, seen(id).length, `${id}: one push per renewal`);
  }
});

function secretsToChain(response: DiscoveryResponse, name: string): Buffer[] | undefined {
  const secret = secretsByName(response).get(name);
  return secret?.tls_certificate === undefined ? undefined : pemToDerList(dataSourceText(secret.tls_certificate.certificate_chain));
}

test('TLS in this process is judged on the simulated clock: an SVID valid now is accepted, the SVID of day 0 is refused as expired', async () => {
  const roots = served.get(A)!.bundle;
  const handshake = async (chain: Buffer[], keyPem: string): Promise<string> => {
    const server = tls.createServer({ cert: certificatesToPem(chain), key: keyPem }, (socket) => socket.end());
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      return await new Promise<string>((resolve) => {
        const socket = tls.connect(
          { host: '127.0.0.1', port, secureContext: tls.createSecureContext({ ca: certificatesToPem(roots) }), checkServerIdentity: () => undefined },
          () => {
            resolve(socket.authorized ? 'authorized' : `connected unauthorized: ${String(socket.authorizationError)}`);
            socket.destroy();
          },
        );
        socket.on('error', (err) => resolve(err.message));
      });
    } finally {
      server.close();
    }
  };
  assert.equal(await handshake(envoyA.chain(A)!, envoyA.privateKeyPem(A)!), 'authorized');
  assert.match(await handshake(firstA.chain, firstA.keyPem), /expired at/);
});
