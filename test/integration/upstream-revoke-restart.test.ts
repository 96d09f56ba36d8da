/**
 * `ca revoke` of a replaced upstream CA whose PKI root stays published, against an in-process meshid-server restarted
 * on the same data dir, with a test client playing an agent over real mTLS gRPC. The agent API's TLS handshake
 * verifies an agent's chain against the bundle alone, and the per-call check rebuilds the chain from the CA journal:
 * for an agent still on the replaced CA's intermediate both must give one answer, before and after a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { compileServerConfig, type RawServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { NO_AGENT_CERTIFICATE } from '../../src/server/api/agent-auth.js';
import { opensslCa } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { connectNode, nodeCall, type AgentIdentity } from '../support/node-api-client.js';

/** What became of an agent's call on a new connection: the TLS layer refused its certificate, the handler did, or neither. */
type Verdict = 'passes' | 'refused at TLS' | 'refused per call';

function concat(dir: string, name: string, files: string[]): string {
  const out = path.join(dir, name);
  fs.writeFileSync(out, files.map((f) => fs.readFileSync(f, 'utf8')).join(''));
  return out;
}

test('an upstream CA under a PKI root that stays published cannot be revoked; its agents pass the TLS handshake and every call, before and after a restart', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-revoke-restart-');
  t.after(cleanup);
  const corporateRoot = opensslCa(dir, 'Corporate Root');
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: corporateRoot });
  const meshFiles = (name: string): RawServerConfig => {
    const ca = opensslCa(dir, name, { issuer: issuing });
    return { upstream_ca_cert: concat(dir, `${name}.chain.pem`, [ca.cert, issuing.cert]), upstream_ca_key: ca.key, upstream_bundle: corporateRoot.cert };
  };
  const mesh1 = meshFiles('Mesh CA 1');
  const mesh2 = meshFiles('Mesh CA 2');
  // After the certificates: openssl dates them from the second it runs, and the clock must not precede them.
  const clock = new FakeClock(Date.now());
  const adminSocket = path.join(dir, 'admin', 'admin.sock');
  let port = 0;
  const start = (upstream: RawServerConfig): Promise<MeshidServer> =>
    MeshidServer.start({
      config: compileServerConfig({
        trust_domain: 'example.org',
        datacenters: ['east'],
        data_dir: path.join(dir, 'data'),
        bind_address: `127.0.0.1:${port}`,
        admin_socket: adminSocket,
        ...upstream,
      }),
      log: silentLogger(),
      clock,
    });
  let server = await start(mesh1);
  port = server.agentPort;
  t.after(() => server.stop());
  const admin = new AdminClient(adminSocket);
  t.after(() => admin.close());
  const bundlePem = certificatesToPem((await admin.call('Bundles', 'GetBundle', {})).x509_authorities ?? []);

  const attest = async (): Promise<AgentIdentity> => {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const token = (await admin.call('Tokens', 'GenerateJoinToken', { datacenter: 'east' })).token!;
    const client = connectNode({ port: () => port }, bundlePem);
    try {
      const res = await nodeCall<{ spiffe_id: string; svid_chain: Buffer[] }>(client, 'Attest', { join_token: token, csr: await createCsr(privateKey, publicKey) });
      return { id: res.spiffe_id, chain: res.svid_chain, key: privateKey };
    } finally {
      client.close();
    }
  };
  const verdict = async (agent: AgentIdentity): Promise<Verdict> => {
    const client = connectNode({ port: () => port }, bundlePem, agent);
    try {
      await nodeCall(client, 'SignX509Svids', { items: [] });
      return 'passes';
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.UNAUTHENTICATED && e.details === NO_AGENT_CERTIFICATE) return 'refused at TLS';
      assert.equal(grpc.status[e.code], 'PERMISSION_DENIED', e.details);
      return 'refused per call';
    } finally {
      client.close();
    }
  };
  const onMesh1 = await attest();
  const authorities = async () => (await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? [];
  const mesh1Root = (await authorities()).find((a) => a.kind === 'root' && a.state === 'active')!;

  // The PKI renewed the mesh CA under the same corporate root; the server restarts with the new files.
  await server.stop();
  server = await start(mesh2);
  await admin.call('Authorities', 'TaintAuthority', { id: mesh1Root.id! });
  const onMesh2 = await attest();
  const revoke = () => runNode(SERVER_MAIN, ['ca', 'revoke', '--id', mesh1Root.id!, '--force', '--admin-socket', adminSocket]);
  const refusal = new RegExp(
    `^Error: FailedPrecondition: root ${mesh1Root.id} was issued by the upstream PKI, and its chains end at "[^"]*Corporate Root", which stays in the bundle without it \\(it is in --upstream-bundle \\(upstream_bundle\\)\\): revoking it would stop nothing trusting the SVIDs under it`,
  );

  const snapshot = async () => ({
    onMesh1: await verdict(onMesh1),
    onMesh2: await verdict(onMesh2),
    bundle: (await admin.call('Bundles', 'GetBundle', {})).x509_authorities,
    authorities: (await authorities()).map((a) => `${a.id} ${a.state}`).sort(),
  });
  const r = await revoke();
  assert.equal(r.code, 1, r.out);
  assert.match(r.err, refusal);
  const before = await snapshot();
  assert.deepEqual([before.onMesh1, before.onMesh2], ['passes', 'passes'], 'the TLS handshake accepts both chains: the corporate root anchors them');
  assert.ok(before.authorities.includes(`${mesh1Root.id} tainted`), 'the refused revoke changed nothing');

  await server.stop();
  server = await start(mesh2);
  assert.deepEqual(await snapshot(), before, 'a restart changes no answer');
  const again = await revoke();
  assert.match(again.err, refusal);
});
