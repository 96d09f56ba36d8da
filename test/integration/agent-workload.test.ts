/**
 * A real meshid-server process and a real meshid-agent process on temp dirs; workloads are this test process (and
 * child processes running as other uids) talking to the agent socket as any SPIFFE client would.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { grpcCode, type WorkloadWatch } from '../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { importPrivateKey, keyMatchesCertificate } from '../../src/common/x509/keys.js';
import { pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { AGENT_MAIN, Cluster, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';
import { event } from '../support/event.js';
import { opensslVerify } from '../support/openssl.js';
import { connectSds, fetchSecrets, secretsByName, dataSourceText } from '../support/sds-client.js';

const uid = process.getuid!();
let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-agent-workload-', ['spiffe://example.org/test-runner']));
});

after(async () => {
  await cluster?.cleanup();
});

/** The next message of a watch, or the error that ended it (bounded: event()). */
async function next(watch: WorkloadWatch<X509SvidResponse>): Promise<X509SvidResponse> {
  const r = await event('the next FetchX509SVID message', watch.next(), 20_000);
  if (r.done) throw new Error('stream ended');
  return r.value;
}

/**
 * Waits until the agent serves this process an X509-SVID for `spiffeId`. PERMISSION_DENIED (the agent has not yet
 * heard of the entry) is waited out; any other failure is thrown as itself, and one still there after 10 s is named.
 */
async function untilServed(spiffeId: string): Promise<void> {
  let last = 'no answer yet';
  for (let i = 0; i < 400; i++) {
    try {
      const ids = await agent.svidIds();
      if (ids.includes(spiffeId)) return;
      last = `served ${JSON.stringify(ids)}`;
    } catch (err) {
      if (grpcCode(err) !== grpc.status.PERMISSION_DENIED) throw err;
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the agent never served ${spiffeId} (last: ${last})`);
}

test('a process registered by unix:uid:<its uid> receives its X509-SVID, which openssl -x509_strict verifies against the bundle', async () => {
  const client = agent.client();
  try {
    const res = await client.fetchX509Svid();
    const svid = res.svids?.[0];
    assert.ok(svid, 'one SVID');
    assert.equal(svid.spiffe_id, 'spiffe://example.org/test-runner');
    const chain = splitConcatenatedDer(svid.x509_svid!);
    assert.equal(chain.length, 2, 'leaf + datacenter intermediate, no root');
    const leaf = parseCertificate(chain[0]!);
    assert.deepEqual(leaf.uriSans, ['spiffe://example.org/test-runner']);
    assert.ok(keyMatchesCertificate(importPrivateKey(svid.x509_svid_key!), chain[0]!), 'the PKCS#8 key matches the leaf');
    const roots = pemToDerList(cluster.bundlePem);
    assert.deepEqual(splitConcatenatedDer(svid.bundle!), roots, 'the bundle served is the server bundle');
    for (const purpose of ['sslclient', 'sslserver'] as const) {
      const r = opensslVerify({ roots, intermediates: chain.slice(1), leaf: chain[0]!, purpose });
      assert.ok(r.ok, r.output);
    }
  } finally {
    client.close();
  }
});

test('an entry created while FetchX509SVID is open is delivered on that stream; deleting every entry ends it PERMISSION_DENIED', async (t) => {
  const selector = `unix:gid:${process.getgid!()}`;
  const first = await cluster.createEntry({ spiffeId: 'spiffe://example.org/second-identity', selectors: [`unix:uid:${uid}`, selector] });
  const client = agent.client();
  const watch = client.watchX509Svids();
  try {
    let msg = await next(watch);
    while ((msg.svids ?? []).length < 2) msg = await next(watch);
    // svids[0] is the oldest matching entry: created_at (milliseconds), then entry ID.
    const byAge = async (): Promise<string[]> => {
      const listed = (await cluster.admin.call('Entries', 'ListEntries', {})).entries!.filter((e) => /identity|test-runner/.test(e.spiffe_id!));
      return listed.sort((x, y) => x.created_at_ms! - y.created_at_ms! || (x.id! < y.id! ? -1 : 1)).map((e) => e.spiffe_id!);
    };
    assert.deepEqual(msg.svids!.map((s) => s.spiffe_id), await byAge());
    const started = Date.now();
    const third = await cluster.createEntry({ spiffeId: 'spiffe://example.org/third-identity', selectors: [selector] });
    do msg = await next(watch);
    while (!(msg.svids ?? []).some((s) => s.spiffe_id === 'spiffe://example.org/third-identity'));
    // The target is < 1 s; timing is reported, never asserted.
    t.diagnostic(`entry created → SVID on the open stream: ${Date.now() - started} ms`);
    assert.deepEqual(msg.svids!.map((s) => s.spiffe_id), await byAge(), 'the order stays the entries age order');
    // Created last, so last, also within the second of an older entry: the default never moves to a newer entry.
    assert.equal(msg.svids!.at(-1)!.spiffe_id, 'spiffe://example.org/third-identity');
    await cluster.deleteEntry(third);
    do msg = await next(watch);
    while ((msg.svids ?? []).some((s) => s.spiffe_id === 'spiffe://example.org/third-identity'));
    assert.equal(msg.svids!.length, 2);
  } finally {
    watch.cancel();
    client.close();
  }

  // Once no entry matches the workload any more, its stream ends with PERMISSION_DENIED.
  const stream = agent.client();
  const w = stream.watchX509Svids();
  try {
    let msg = await next(w);
    assert.ok(msg.svids!.some((s) => s.spiffe_id === 'spiffe://example.org/second-identity'));
    await cluster.deleteEntry(first);
    const runnerEntries = await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: 'spiffe://example.org/test-runner' });
    await cluster.deleteEntry(runnerEntries.entries![0]!.id!);
    const err = await (async () => {
      try {
        for (;;) msg = await next(w);
      } catch (e) {
        return e;
      }
    })();
    assert.equal(grpcCode(err), grpc.status.PERMISSION_DENIED, String(err));
  } finally {
    w.cancel();
    stream.close();
    await cluster.createEntry({ spiffeId: 'spiffe://example.org/test-runner', selectors: [`unix:uid:${uid}`] });
  }
});

test('a process running as uid 65534 that no entry matches gets PERMISSION_DENIED', async () => {
  const child = spawn(process.execPath, [AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', agent.socketPath], {
    uid: 65534,
    gid: 65534,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.notEqual(code, 0);
  assert.match(out, /PermissionDenied/, out);
});

test('JWT-SVIDs come from the server through the agent, are cached, and validate against the agent', async () => {
  await untilServed('spiffe://example.org/test-runner'); // the entry the test before re-created
  const client = agent.client();
  try {
    const a = await client.fetchJwtSvid(['db']);
    const b = await client.fetchJwtSvid(['db']);
    assert.equal(a.svids?.[0]?.spiffe_id, 'spiffe://example.org/test-runner');
    assert.equal(b.svids?.[0]?.svid, a.svids?.[0]?.svid, 'the cached token is reused while fresh');
    const claims = JSON.parse(Buffer.from(a.svids![0]!.svid!.split('.')[1]!, 'base64url').toString());
    assert.deepEqual(claims.aud, ['db']);
    const validated = await client.validateJwtSvid('db', a.svids![0]!.svid!);
    assert.equal(validated.spiffeId, 'spiffe://example.org/test-runner');
  } finally {
    client.close();
  }
});

test('a JWT-SVID carries its audiences in the order requested: ["b","a"] then ["a","b"] each get their own order', async () => {
  const client = agent.client();
  const aud = (res: Awaited<ReturnType<typeof client.fetchJwtSvid>>): unknown =>
    JSON.parse(Buffer.from(res.svids![0]!.svid!.split('.')[1]!, 'base64url').toString()).aud;
  try {
    const ba = await client.fetchJwtSvid(['b', 'a']);
    assert.deepEqual(aud(ba), ['b', 'a'], 'aud[0] is the first audience asked for');
    const ab = await client.fetchJwtSvid(['a', 'b']);
    assert.deepEqual(aud(ab), ['a', 'b'], 'the same audiences in another order are not served the cached ["b","a"] token');
    assert.deepEqual(aud(await client.fetchJwtSvid(['b', 'a'])), ['b', 'a'], 'and the first order still gets its own');
  } finally {
    client.close();
  }
});

test('Envoy SDS on the same socket serves the default SVID and ROOTCA as PEM', async () => {
  const sds = connectSds(agent.socketPath);
  try {
    const res = await fetchSecrets(sds, { resource_names: ['default', 'ROOTCA'] });
    const secrets = secretsByName(res);
    const chainPem = dataSourceText(secrets.get('default')?.tls_certificate?.certificate_chain);
    assert.deepEqual(parseCertificate(pemToDerList(chainPem)[0]!).uriSans, ['spiffe://example.org/test-runner']);
    assert.ok(secrets.get('ROOTCA')?.validation_context, 'ROOTCA is a validation context');
  } finally {
    sds.close();
  }
});

test('health: SERVING, with how long until the oldest SVID expires in its trailing metadata', async () => {
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const client = new Health(`unix://${agent.socketPath}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  try {
    const trailer = await new Promise<grpc.Metadata>((resolve, reject) => {
      const call = client['Check']!({ service: '' }, (err: grpc.ServiceError | null, res: { status?: string }) => {
        if (err) reject(err);
        else assert.equal(res.status, 'SERVING');
      });
      call.on('status', (s: grpc.StatusObject) => resolve(s.metadata));
    });
    assert.equal(trailer.get('meshid-agent-state')[0], 'synced');
    const seconds = Number(trailer.get('meshid-oldest-svid-expires-in-seconds')[0]);
    assert.ok(seconds > 23 * 3600 && seconds <= 24 * 3600, `oldest SVID expires in ${seconds} s`);
    // An unknown service is NOT_FOUND naming it, cut short when huge: quoted whole, 300 KB made a status trailer too
    // large to send, and the caller got only its deadline.
    const unknown = await new Promise<grpc.ServiceError>((resolve) => {
      client['Check']!({ service: 'x'.repeat(300_000) }, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError) => resolve(err));
    });
    assert.equal(grpc.status[unknown.code], 'NOT_FOUND', unknown.details.slice(0, 200));
    assert.match(unknown.details, /^unknown service "x+ … \(\d+ characters left out\) … x+"$/);
  } finally {
    client.close();
  }
});
