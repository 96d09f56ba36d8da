/**
 * The SPIFFE Workload API through a real agent and server: SVIDs used for mTLS, the security header, and the
 * JWT-SVID round trip with its refusals.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { isMeshidError } from '../../src/common/errors.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { certificatesToPem, splitConcatenatedDer, toPem } from '../../src/common/x509/pem.js';
import { AGENT_MAIN, Cluster, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';
import { event } from '../support/event.js';

const A = 'spiffe://example.org/web';
const B = 'spiffe://example.org/api';

let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-wl-e2e-', [A, B]));
});

after(async () => {
  await cluster?.cleanup();
});

function uriSan(peer: tls.PeerCertificate): string {
  return /URI:([^,]+)/.exec(peer.subjectaltname ?? '')?.[1] ?? '';
}

test('two SVIDs from FetchX509SVID complete mTLS with node:tls, each side checking the peer SPIFFE ID', async () => {
  const client = agent.client(10_000);
  const res = await event(
    'FetchX509SVID with both SVIDs',
    (async () => {
      for (;;) {
        const r = await client.fetchX509Svid();
        if (r.svids.length === 2) return r;
      }
    })(),
    20_000,
  ).finally(() => client.close());
  const byId = new Map(res.svids.map((s) => [s.spiffe_id, s]));
  const material = (id: string) => {
    const s = byId.get(id)!;
    return {
      cert: certificatesToPem(splitConcatenatedDer(s.x509_svid)),
      key: toPem('PRIVATE KEY', s.x509_svid_key),
      ca: certificatesToPem(splitConcatenatedDer(s.bundle)),
    };
  };
  let serverSaw = '';
  const server = tls.createServer({ ...material(A), requestCert: true, rejectUnauthorized: true }, (socket) => {
    serverSaw = uriSan(socket.getPeerCertificate());
    socket.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({
        ...material(B),
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        checkServerIdentity: (_h, cert) => (uriSan(cert) === A ? undefined : new Error(`unexpected server ${uriSan(cert)}`)),
      });
      let data = '';
      socket.on('data', (d: Buffer) => (data += d.toString()));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    assert.equal(reply, 'ok');
    assert.equal(serverSaw, B);
  } finally {
    server.close();
  }
});

test('a Workload API call without the workload.spiffe.io header, or with a wrong value, is INVALID_ARGUMENT', async () => {
  const Ctor = serviceClient(loadProto('workload/workload.proto'), 'SpiffeWorkloadAPI');
  const raw = new Ctor(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  try {
    const code = (md: grpc.Metadata): Promise<number> =>
      new Promise((resolve) => {
        (raw as unknown as Record<string, Function>)['FetchJWTSVID']!.call(raw, { audience: ['x'] }, md, (err: grpc.ServiceError | null) => resolve(err?.code ?? 0));
      });
    assert.equal(await code(new grpc.Metadata()), grpc.status.INVALID_ARGUMENT);
    const wrong = new grpc.Metadata();
    wrong.set('workload.spiffe.io', 'True');
    assert.equal(await code(wrong), grpc.status.INVALID_ARGUMENT);
    const right = new grpc.Metadata();
    right.set('workload.spiffe.io', 'true');
    assert.equal(await code(right), grpc.status.OK);
  } finally {
    raw.close();
  }
});

test("JWT-SVID round trip: fetch then validate; another audience, a forged signature and another uid's identity are refused", async (t) => {
  // Another uid's entry, which the agent holds (served to uid 65533): not just a name nobody registered.
  const NOT_MINE = 'spiffe://example.org/not-mine';
  const notMine = await cluster.createEntry({ spiffeId: NOT_MINE, selectors: ['unix:uid:65533'] });
  t.after(() => cluster.deleteEntry(notMine));
  const servedTo65533 = (): string => {
    const r = spawnSync(process.execPath, [AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', agent.socketPath], { uid: 65533, gid: 65533, encoding: 'utf8', timeout: 20_000 });
    return r.stdout + r.stderr;
  };
  for (let i = 0; !servedTo65533().includes(NOT_MINE); i++) {
    assert.ok(i < 100, `uid 65533 was never served ${NOT_MINE}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const client = agent.client(10_000);
  try {
    const res = await client.fetchJwtSvid(['payments'], A);
    const token = res.svids![0]!.svid!;
    assert.equal(res.svids![0]!.spiffe_id, A);
    const ok = await client.validateJwtSvid('payments', token);
    assert.equal(ok.spiffeId, A);
    assert.deepEqual(ok.claims['aud'], ['payments']);
    await assert.rejects(client.validateJwtSvid('other-service', token), /audience/);
    const [h, p, sig] = token.split('.') as [string, string, string];
    const flipped = Buffer.from(sig, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    const forged = `${h}.${p}.${flipped.toString('base64url')}`;
    await assert.rejects(client.validateJwtSvid('payments', forged), /signature/);
    await assert.rejects(client.fetchJwtSvid(['payments'], NOT_MINE), (e) => isMeshidError(e, 'permission_denied') && e.message.includes(`the caller is not entitled to ${NOT_MINE}`));
    await assert.rejects(client.fetchJwtSvid([]), /audience/);
  } finally {
    client.close();
  }
});

test('ValidateJWTSVID takes a token with whitespace at its ends (a trailing newline from a file, a CRLF), as SPIRE\'s agent does; whitespace inside is refused', async () => {
  const client = agent.client(10_000);
  try {
    const token = (await client.fetchJwtSvid(['payments'], A)).svids![0]!.svid!;
    for (const sent of [`${token}\n`, `${token}\r\n`, `\n ${token}\t `]) {
      const ok = await client.validateJwtSvid('payments', sent);
      assert.equal(ok.spiffeId, A, JSON.stringify(sent));
    }
    const [h, p, sig] = token.split('.') as [string, string, string];
    await assert.rejects(client.validateJwtSvid('payments', `${h}.${p}\n.${sig}`), (e) => isMeshidError(e, 'invalid_argument'));
    await assert.rejects(client.validateJwtSvid('payments', ' \n'), (e) => isMeshidError(e, 'invalid_argument') && /svid must be specified/.test(e.message));
  } finally {
    client.close();
  }
});

test('ca taint of the datacenter intermediate: the open stream promptly receives SVIDs from the new intermediate', async () => {
  const client = agent.client(20_000);
  const watch = client.watchX509Svids();
  try {
    const first = (await event('the first FetchX509SVID message', watch.next(), 20_000)).value!;
    const oldIntermediate = splitConcatenatedDer(first.svids[0]!.x509_svid)[1]!;
    const list = await cluster.admin.call('Authorities', 'ListAuthorities', {});
    const east = (list.authorities ?? []).find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
    await cluster.admin.call('Authorities', 'TaintAuthority', { id: east.id! });
    await event(
      'a FetchX509SVID message with every SVID from the new intermediate after the taint',
      (async () => {
        for (;;) {
          const next = await watch.next();
          assert.notEqual(next.done, true, 'the stream stays open');
          const chains = next.value!.svids.map((s: { x509_svid: Buffer }) => splitConcatenatedDer(s.x509_svid)[1]!);
          if (chains.every((c: Buffer) => !c.equals(oldIntermediate))) return;
        }
      })(),
      20_000,
    );
  } finally {
    watch.cancel();
    client.close();
  }
});

test('ca taint of the active JWT key: FetchJWTSVID stops handing out the cached token it signed, and what it hands out validates', async () => {
  const client = agent.client(10_000);
  try {
    const before = (await client.fetchJwtSvid(['ledger'], A)).svids![0]!.svid!;
    const kid = (token: string): string => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
    const list = await cluster.admin.call('Authorities', 'ListAuthorities', {});
    const active = (list.authorities ?? []).find((a) => a.kind === 'jwt' && a.state === 'active')!;
    assert.equal(kid(before), active.id, 'the cached token was signed by the active key');
    await cluster.admin.call('Authorities', 'TaintAuthority', { id: active.id! });
    // The bundle update reaches the agent over its Sync stream: poll for it, bounded.
    let after = before;
    for (let i = 0; i < 100 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = (await client.fetchJwtSvid(['ledger'], A)).svids![0]!.svid!;
    }
    assert.notEqual(after, before, 'a new token, long before the cached one\'s half-life');
    assert.notEqual(kid(after), active.id);
    assert.equal((await client.validateJwtSvid('ledger', after)).spiffeId, A);
    await assert.rejects(client.validateJwtSvid('ledger', before), /kid/);
  } finally {
    client.close();
  }
});
