/**
 * A revoked upstream CA's PKI root listed again in --upstream-bundle, against an in-process meshid-server restarted on
 * the same data dir, with a test client playing an agent over real mTLS gRPC and an upstream PKI made with openssl.
 * `ca revoke` took the CA out of the journal, so only what the journal keeps of revoked roots tells the restarted
 * server that the PKI root it publishes again anchors a revoked CA's key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import { FakeClock } from '../../src/common/clock.js';
import { createLogger } from '../../src/common/log.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import type { RawServerConfig } from '../../src/server/config.js';
import { opensslCa } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { concat, startUpstreamServer } from '../support/upstream-restart.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { teardown } from '../support/teardown.js';

/**
 * The scenario both tests share: Mesh CA 1 under PKI root A, then Mesh CA 2 under root B, Mesh CA 1 tainted and
 * revoked, and a restart whose --upstream-bundle lists B and `listedAgain(rootA)` (the certificate file of root A as
 * the operator lists it again).
 */
async function republishAfterRevoke(t: { after(fn: () => unknown): void }, listedAgain: (dir: string, rootA: { cert: string; key: string }) => string): Promise<void> {
  const { dir, cleanup } = tempDir('meshid-upstream-revoked-anchor-');
  teardown(t).after(cleanup);
  const rootA = opensslCa(dir, 'Corporate Root A');
  const rootB = opensslCa(dir, 'Corporate Root B');
  const mesh1 = opensslCa(dir, 'Mesh CA 1', { issuer: rootA });
  const mesh2 = opensslCa(dir, 'Mesh CA 2', { issuer: rootB });
  const underA: RawServerConfig = { upstream_ca_cert: mesh1.cert, upstream_ca_key: mesh1.key, upstream_bundle: rootA.cert };
  const underB: RawServerConfig = { upstream_ca_cert: mesh2.cert, upstream_ca_key: mesh2.key, upstream_bundle: rootB.cert };
  // The operator lists root A again, say for another CA of theirs.
  const rootAAgain = listedAgain(dir, rootA);
  const underBWithA: RawServerConfig = { ...underB, upstream_bundle: concat(dir, 'roots.pem', [rootB.cert, rootAAgain]) };
  // After the certificates: openssl dates them from the second it runs, and the clock must not precede them.
  const clock = new FakeClock(Date.now());
  const lines: Array<{ level: number; msg: string; revokedAuthority?: string; anchor?: string }> = [];
  const log = createLogger({ name: 'test', pretty: false, destination: new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }) });
  const ups = await startUpstreamServer(t, dir, underA, clock, log);
  const { admin, bundle } = ups;
  const attest = () => ups.attest();
  const verdict = (agent: Parameters<typeof ups.verdict>[0]) => ups.verdict(agent);
  const authorities = async () => (await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? [];
  const onMesh1 = await attest();
  const mesh1Root = (await authorities()).find((a) => a.kind === 'root' && a.state === 'active')!;

  // Mesh CA 1 is believed compromised: the server moves to a CA under another PKI root, and Mesh CA 1 is revoked.
  await ups.restart(underB);
  await admin.call('Authorities', 'TaintAuthority', { id: mesh1Root.id! });
  const onMesh2 = await attest();
  await admin.call('Authorities', 'RevokeAuthority', { id: mesh1Root.id!, force: true });
  const [rootADer] = pemToDerList(fs.readFileSync(rootA.cert, 'utf8'));
  assert.ok(!(await bundle()).some((d) => d.equals(rootADer!)), 'the revoke took root A out of the bundle');
  assert.equal(await verdict(onMesh1), 'refused at TLS');
  const warnings = () => lines.filter((l) => l.level === 50 && l.revokedAuthority === mesh1Root.id);
  assert.deepEqual(warnings(), [], 'nothing published anchors the revoked CA');
  // `ca show` lists the record, with the anchor by the fingerprint the warning will name.
  const shown = await runNode(SERVER_MAIN, ['ca', 'show', '--admin-socket', ups.adminSocket]);
  assert.equal(shown.code, 0, shown.err);
  const rootAFingerprint = parseCertificate(rootADer!).fingerprintSha256;
  assert.match(shown.out, new RegExp(`^Revoked root +: ${mesh1Root.id}\n(?:.*\n)*?Trust anchor +: O=Example Corp, CN=Corporate Root A \\(sha256 ${rootAFingerprint}\\)$`, 'm'));
  assert.equal((shown.out.match(/^Authority ID/gm) ?? []).length, (await authorities()).length, 'a revoked root is no authority of the journal');

  // A later restart lists root A in --upstream-bundle again.
  await ups.restart(underBWithA);
  const [rootAAgainDer] = pemToDerList(fs.readFileSync(rootAAgain, 'utf8'));
  assert.ok((await bundle()).some((d) => d.equals(rootAAgainDer!)), 'the bundle publishes what the operator configured');
  const [warning, ...more] = warnings();
  assert.deepEqual(more, [], 'warned once');
  assert.equal(warning?.anchor, 'O=Example Corp, CN=Corporate Root A');
  assert.match(
    warning!.msg,
    new RegExp(
      `^the trust bundle publishes "O=Example Corp, CN=Corporate Root A" \\(sha256 [0-9a-f]{64}\\) again, the trust anchor of root ${mesh1Root.id} ` +
        `\\("O=Example Corp, CN=Mesh CA 1", sha256 [0-9a-f]{64}\\), revoked [0-9T:.-]+Z: every workload trusts certificates the revoked CA's key signs again`,
    ),
  );
  assert.match(warning!.msg, /It is published because it is in --upstream-bundle \(upstream_bundle\)\. The agent API's TLS layer does not accept agent certificates under it/);
  assert.match(warning!.msg, /To stop trusting it, take it out of --upstream-bundle and restart/);
  assert.equal(await verdict(onMesh1), 'refused at TLS', 'an agent under the revoked CA is refused at the handshake, not only per call');
  assert.equal(await verdict(onMesh2), 'passes');
}

test('a revoked upstream CA whose PKI root a restart publishes again is named at error level, and the agent API TLS layer refuses agents under it', (t) =>
  republishAfterRevoke(t, (_dir, rootA) => rootA.cert));

test('a revoked upstream CA whose PKI root comes back re-issued with the same key and subject (another DER) is warned of and refused at TLS too', (t) =>
  republishAfterRevoke(t, (dir, rootA) => {
    // The PKI re-issues root A with its key and name (new validity, new serial): another DER, but every chain that
    // ended at root A verifies against it.
    const renewed = opensslCa(dir, 'Corporate Root A renewed', { reuseKey: rootA.key, subject: '/O=Example Corp/CN=Corporate Root A', days: 4000 });
    assert.ok(!fs.readFileSync(renewed.cert).equals(fs.readFileSync(rootA.cert)));
    return renewed.cert;
  }));
