/**
 * Envoy SDS v3 end to end: a real meshid-server and meshid-agent process, and a test client built from Envoy's
 * message definitions (proto/envoy, Envoy's package names and field numbers) playing two sidecars.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../src/common/paths.js';
import { AGENT_MAIN, Cluster, startClusterServing, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';
import {
  connectSds, DeltaClient, SotwClient, dataSourceText, envoyNode, SECRET_TYPE_URL, decodeDeltaResources, fetchSecrets, secretsByName,
  spiffeTrustDomains, type DecodedSecret,
} from '../support/sds-client.js';
import { toStruct } from '../../src/common/grpc/proto.js';
import { teardown } from '../support/teardown.js';

const A = 'spiffe://example.org/sidecar/a';
const B = 'spiffe://example.org/sidecar/b';

let cluster: Cluster;
let agent: AgentProcess;
let sds: grpc.Client;
let entryA = '';

before(async () => {
  ({ cluster, agent, entryIds: [entryA] } = await startClusterServing('meshid-sds-e2e-', [A, B]));
  sds = connectSds(agent.socketPath);
});

after(async () => {
  sds?.close();
  await cluster?.cleanup();
});

/** A sidecar's TLS material from its SDS secrets: its own certificate and the trust domain's roots. */
function tlsMaterial(cert: DecodedSecret, validation: DecodedSecret): { cert: string; key: string; ca: string } {
  const domains = spiffeTrustDomains(validation);
  assert.deepEqual(domains.map((d) => d.name), ['example.org'], 'bare trust domain name in the SPIFFE validator config');
  return {
    cert: dataSourceText(cert.tls_certificate?.certificate_chain),
    key: dataSourceText(cert.tls_certificate?.private_key),
    ca: domains[0]!.trustBundlePem,
  };
}

function uriSan(peer: tls.PeerCertificate): string {
  return /URI:([^,]+)/.exec(peer.subjectaltname ?? '')?.[1] ?? '';
}

test('two sidecars take their SVIDs and ROOTCA over StreamSecrets and complete mTLS, each checking the peer SPIFFE ID', async () => {
  const streamA = new SotwClient(sds);
  const streamB = new SotwClient(sds);
  try {
    streamA.subscribe([A, 'ROOTCA'], envoyNode('sidecar-a'));
    streamB.subscribe([B, 'ROOTCA'], envoyNode('sidecar-b'));
    const [ra, rb] = await Promise.all([streamA.next(10_000), streamB.next(10_000)]);
    streamA.ack(ra, [A, 'ROOTCA']);
    streamB.ack(rb, [B, 'ROOTCA']);
    const sa = secretsByName(ra);
    const sb = secretsByName(rb);
    assert.match(dataSourceText(sa.get(A)!.tls_certificate?.private_key), /^-----BEGIN PRIVATE KEY-----/);
    assert.equal(sa.get('ROOTCA')!.validation_context?.custom_validator_config?.name, 'envoy.tls.cert_validator.spiffe');
    const a = tlsMaterial(sa.get(A)!, sa.get('ROOTCA')!);
    const b = tlsMaterial(sb.get(B)!, sb.get('ROOTCA')!);

    let serverSawPeer = '';
    const server = tls.createServer({ ...a, requestCert: true, rejectUnauthorized: true }, (socket) => {
      serverSawPeer = uriSan(socket.getPeerCertificate());
      socket.end('hello from a');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({
          ...b,
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
          checkServerIdentity: (_host, cert) => (uriSan(cert) === A ? undefined : new Error(`server is ${uriSan(cert)}, expected ${A}`)),
        });
        let data = '';
        socket.on('data', (d: Buffer) => (data += d.toString()));
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });
      assert.equal(reply, 'hello from a');
      assert.equal(serverSawPeer, B, 'the server side sees the client sidecar SPIFFE ID');
    } finally {
      server.close();
    }
  } finally {
    streamA.cancel();
    streamB.cancel();
  }
});

test('a renewed SVID is pushed on the open stream; a stream for the other identity receives nothing', async () => {
  const watchA = new SotwClient(sds);
  const watchB = new SotwClient(sds);
  try {
    watchA.subscribe([A], envoyNode('a'));
    watchB.subscribe([B], envoyNode('b'));
    const firstA = await watchA.next(10_000);
    const firstB = await watchB.next(10_000);
    watchA.ack(firstA, [A]);
    watchB.ack(firstB, [B]);
    // An entry change makes the agent re-sign exactly that SVID.
    await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryA, dns_names: ['a.mesh.internal'] }, mask: ['dns_names'] });
    const pushed = await watchA.next(10_000);
    assert.notEqual(pushed.version_info, firstA.version_info);
    const chain = dataSourceText(secretsByName(pushed).get(A)!.tls_certificate?.certificate_chain);
    assert.notEqual(chain, dataSourceText(secretsByName(firstA).get(A)!.tls_certificate?.certificate_chain));
    watchA.ack(pushed, [A]);
    // B's identity did not change, so B's stream gets nothing for A's change. Shown with a sentinel: B's entry changes
    // next. The agent receives entry changes in order on its one Sync stream and writes each stream's responses in
    // order, so a push to B caused by A's change would reach B before the push for B's own change; the first thing B
    // receives must therefore be the SVID carrying B's new DNS name (a re-push or a re-signing for A's change would not).
    const entryB = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: B })).entries![0]!.id!;
    await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryB, dns_names: ['b-sentinel.mesh.internal'] }, mask: ['dns_names'] });
    const sentinel = await watchB.next(10_000);
    const sentinelCert = new X509Certificate(dataSourceText(secretsByName(sentinel).get(B)!.tls_certificate?.certificate_chain));
    assert.match(sentinelCert.subjectAltName ?? '', /DNS:b-sentinel\.mesh\.internal/, 'no push for an unchanged identity: B\'s first push is for its own change');
    assert.equal(watchB.received.length, 2, 'no push for an unchanged identity');
  } finally {
    watchA.cancel();
    watchB.cancel();
  }
});

test('DeltaSecrets reconnect with initial_resource_versions resends only what changed', async () => {
  const first = new DeltaClient(sds);
  const r1 = await (async () => {
    first.request({ subscribe: [A, B, 'ROOTCA'], node: envoyNode('delta') });
    return first.next(10_000);
  })();
  const versions = Object.fromEntries(decodeDeltaResources(r1).map((r) => [r.name, r.version]));
  assert.deepEqual(Object.keys(versions).sort(), ['ROOTCA', A, B].sort());
  first.ack(r1);
  first.cancel();

  // While "disconnected", B's SVID is renewed.
  const entryB = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: B })).entries![0]!.id!;
  await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryB, dns_names: ['b.mesh.internal'] }, mask: ['dns_names'] });
  // The agent re-signs B when its Sync update arrives, an event: polled for (up to 10 s), not slept for.
  const oldB = dataSourceText(decodeDeltaResources(r1).find((r) => r.name === B)!.secret.tls_certificate?.certificate_chain);
  const servedB = async (): Promise<string> =>
    dataSourceText(secretsByName(await fetchSecrets(sds, { node: envoyNode('delta'), resource_names: [B], type_url: SECRET_TYPE_URL })).get(B)?.tls_certificate?.certificate_chain);
  for (let i = 0; i < 400 && (await servedB()) === oldB; i++) await new Promise((r) => setTimeout(r, 25));
  assert.notEqual(await servedB(), oldB, 'the agent renewed B\'s SVID');

  const again = new DeltaClient(sds);
  try {
    again.request({ subscribe: [A, B, 'ROOTCA'], initialVersions: versions, node: envoyNode('delta') });
    const r2 = await again.next(10_000);
    assert.deepEqual(decodeDeltaResources(r2).map((r) => r.name), [B], 'only the renewed SVID is resent');
  } finally {
    again.cancel();
  }
});

test("a name the caller is not entitled to is never served: another uid's identity, which the agent holds and serves to that uid", async (t) => {
  const other = 'spiffe://example.org/someone-else';
  // Not 65534: a test below needs that uid to match no entry.
  const otherEntry = await cluster.createEntry({ spiffeId: other, selectors: ['unix:uid:65533'] });
  teardown(t).after(() => cluster.deleteEntry(otherEntry));
  // Not just a name nobody registered: a process of uid 65533 is served it, so the agent has it to give.
  const servedTo65533 = (): string => {
    const r = spawnSync(process.execPath, [AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', agent.socketPath], { uid: 65533, gid: 65533, encoding: 'utf8', timeout: 20_000 });
    return r.stdout + r.stderr;
  };
  let seen = servedTo65533();
  for (let i = 0; i < 100 && !seen.includes(other); i++) {
    await new Promise((r) => setTimeout(r, 100));
    seen = servedTo65533();
  }
  assert.ok(seen.includes(other), `uid 65533 was never served ${other}:\n${seen}`);

  const stream = new SotwClient(sds);
  try {
    stream.subscribe([other, 'ROOTCA']);
    const r = await stream.next(10_000);
    assert.deepEqual([...secretsByName(r).keys()], ['ROOTCA']);
  } finally {
    stream.cancel();
  }
});

test('ALL for an Envoy without the SPIFFE validator is FAILED_PRECONDITION on StreamSecrets, DeltaSecrets and FetchSecrets', async () => {
  // Opted out in its node metadata, as SPIRE reads it: this Envoy would get one trusted_ca for every trust domain.
  const node = envoyNode('opted-out', { metadata: toStruct({ disable_spiffe_cert_validation: true }) });
  const refused = /^"ALL" \(every trust domain's roots in one validation context\) is served only with Envoy's SPIFFE certificate validator.*node metadata sets disable_spiffe_cert_validation to true/;
  const sotw = new SotwClient(sds);
  const delta = new DeltaClient(sds);
  try {
    sotw.subscribe(['default', 'ALL'], node);
    delta.request({ subscribe: ['ALL'], node });
    await assert.rejects(sotw.next(10_000), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION);
    await assert.rejects(delta.next(10_000), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION);
    assert.match((await sotw.status).details, refused);
    assert.match((await delta.status).details, refused);
    assert.equal(sotw.received.length + delta.received.length, 0);
    const fetched = await fetchSecrets(sds, { node, resource_names: ['ALL'] }).then(
      () => assert.fail('ALL was served'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(fetched.code, grpc.status.FAILED_PRECONDITION);
    assert.match(fetched.details, refused);
    // The same Envoy still gets its own trust domain, as trusted_ca.
    const rootca = secretsByName(await fetchSecrets(sds, { node, resource_names: ['ROOTCA'] })).get('ROOTCA');
    assert.match(dataSourceText(rootca?.validation_context?.trusted_ca), /^-----BEGIN CERTIFICATE-----/);
  } finally {
    sotw.cancel();
    delta.cancel();
  }
});

test('an Envoy running as a uid no entry matches (65534) gets PERMISSION_DENIED and no secret', async () => {
  const client = pathToFileURL(path.join(packageRoot, 'dist/test/support/sds-client.js')).href;
  const script = `
    const { connectSds, SotwClient } = await import(${JSON.stringify(client)});
    const s = new SotwClient(connectSds(process.argv[1]));
    s.subscribe(['default', 'ROOTCA']);
    const status = await s.status;
    console.log(JSON.stringify({ code: status.code, received: s.received.length }));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, agent.socketPath], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim()) as { code: number; received: number };
  assert.equal(out.code, grpc.status.PERMISSION_DENIED);
  assert.equal(out.received, 0);
});

test('a deleted entry\'s SVID is withdrawn from open StreamSecrets streams: the next response, explicit or wildcard, leaves it out', async (t) => {
  const keep = 'spiffe://example.org/sidecar/keep';
  const withdrawn = 'spiffe://example.org/sidecar/withdrawn';
  const own = await startClusterWithAgent('meshid-sds-withdraw-', [keep, withdrawn]);
  teardown(t).after(() => own.cluster.cleanup());
  const workload = own.agent.client(10_000);
  assert.equal((await workload.fetchX509Svid()).svids.length, 2);
  workload.close();
  const client = connectSds(own.agent.socketPath);
  teardown(t).after(() => client.close());
  const explicit = new SotwClient(client);
  const wildcard = new SotwClient(client);
  teardown(t).after(() => {
    explicit.cancel();
    wildcard.cancel();
  });
  explicit.subscribe([keep, withdrawn]);
  wildcard.subscribe([]);
  const first = { explicit: await explicit.next(), wildcard: await wildcard.next() };
  assert.deepEqual([...secretsByName(first.explicit).keys()].sort(), [keep, withdrawn]);
  assert.ok(secretsByName(first.wildcard).has(withdrawn));
  explicit.ack(first.explicit, [keep, withdrawn]);
  wildcard.ack(first.wildcard, []);

  await own.cluster.deleteEntry(own.entryIds[1]!);
  // Nothing else the streams hold changes: before, no response followed, and the last one kept presenting the
  // withdrawn SVID and its key as current.
  const next = { explicit: await explicit.next(10_000), wildcard: await wildcard.next(10_000) };
  assert.deepEqual([...secretsByName(next.explicit).keys()], [keep]);
  assert.notEqual(next.explicit.version_info, first.explicit.version_info);
  assert.ok(!secretsByName(next.wildcard).has(withdrawn), 'the wildcard stream no longer holds the withdrawn SVID');
  assert.ok(secretsByName(next.wildcard).has(keep));
});

test('a StreamSecrets client that resumes, after a reconnect, with the version of a secret withdrawn meanwhile gets an empty response', async (t) => {
  const withdrawn = 'spiffe://example.org/sidecar/withdrawn';
  // The caller keeps another identity: with none, the new stream is refused PERMISSION_DENIED, which says enough.
  const own = await startClusterWithAgent('meshid-sds-resume-withdrawn-', ['spiffe://example.org/sidecar/keep', withdrawn]);
  teardown(t).after(() => own.cluster.cleanup());
  const client = connectSds(own.agent.socketPath);
  teardown(t).after(() => client.close());
  const before = new SotwClient(client);
  before.subscribe([withdrawn]);
  const held = await before.next(10_000);
  assert.deepEqual([...secretsByName(held).keys()], [withdrawn]);
  before.ack(held, [withdrawn]);
  before.cancel();

  await own.cluster.deleteEntry(own.entryIds[1]!);
  // The server has committed the delete; the agent applies it when its Sync update arrives, an event polled for
  // (a stream opened before that is rightly answered the secret it still resolves).
  // Withdrawn is NOT_FOUND (FetchSecrets is all or nothing); any other failure (the agent gone, the caller refused) is
  // no proof of a withdrawal and fails the test as itself.
  const stillServed = async (): Promise<boolean> => {
    try {
      return ((await fetchSecrets(client, { node: envoyNode(), resource_names: [withdrawn], type_url: SECRET_TYPE_URL })).resources ?? []).length > 0;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return false;
      throw err;
    }
  };
  for (let i = 0; i < 400 && (await stillServed()); i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(await stillServed(), false, 'the agent withdrew the deleted entry\'s secret');
  // Envoy resumes a new stream with the version it holds (xds_protocol). Nothing it asks for resolves now: before, no
  // response came and a client taking responses as the full state went on holding the withdrawn SVID.
  const resumed = new SotwClient(client);
  teardown(t).after(() => resumed.cancel());
  resumed.send({ node: envoyNode(), resource_names: [withdrawn], type_url: SECRET_TYPE_URL, version_info: held.version_info, response_nonce: '' });
  const answer = await resumed.next(10_000);
  assert.deepEqual(answer.resources ?? [], []);
  assert.notEqual(answer.version_info, held.version_info);
});
