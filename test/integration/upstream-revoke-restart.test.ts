/**
 * `ca revoke` of a replaced upstream CA whose PKI root stays published, against an in-process meshid-server restarted
 * on the same data dir, with a test client playing an agent over real mTLS gRPC. The agent API's TLS handshake
 * verifies an agent's chain against the bundle alone, and the per-call check rebuilds the chain from the CA journal:
 * for an agent still on the replaced CA's intermediate both must give one answer, before and after a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import type { RawServerConfig } from '../../src/server/config.js';
import { opensslCa } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { concat, startUpstreamServer } from '../support/upstream-restart.js';
import { teardown } from '../support/teardown.js';

test('an upstream CA under a PKI root that stays published cannot be revoked; its agents pass the TLS handshake and every call, before and after a restart', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-revoke-restart-');
  teardown(t).after(cleanup);
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
  const ups = await startUpstreamServer(t, dir, mesh1, clock, silentLogger());
  const { admin, adminSocket } = ups;
  // The bundle the agents were given at the start, kept throughout.
  const bundlePem = certificatesToPem(await ups.bundle());
  const attest = () => ups.attest(bundlePem);
  const verdict = (agent: Parameters<typeof ups.verdict>[0]) => ups.verdict(agent, bundlePem);
  const onMesh1 = await attest();
  const authorities = async () => (await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? [];
  const mesh1Root = (await authorities()).find((a) => a.kind === 'root' && a.state === 'active')!;

  // The PKI renewed the mesh CA under the same corporate root; the server restarts with the new files.
  await ups.restart(mesh2);
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

  await ups.restart(mesh2);
  assert.deepEqual(await snapshot(), before, 'a restart changes no answer');
  const again = await revoke();
  assert.match(again.err, refusal);
});
