import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeClock } from '../../../src/common/clock.js';
import { failedPrecondition } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import type { CaManager } from '../../../src/server/ca/ca-manager.js';
import { ServerSvid } from '../../../src/server/server-svid.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import { opensslCa, opensslVerify, type OpensslCaFiles } from '../../support/openssl.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { chainNamesKeyId, parseCaCertificate } from '../../../src/common/x509/chain-verification.js';
import { certificatesToPem, pemToDerList, toPem } from '../../../src/common/x509/pem.js';
import { exportPkcs8Pem, generateKeyPair } from '../../../src/common/x509/keys.js';
import { teardown } from '../../support/teardown.js';

const H = 3_600_000;

/** A ServerSvid for east following taints, over a real test CA in a temp dir; all disposed after the test. */
async function followingSvid(t: TestContext, dataDir?: string, raw: Parameters<typeof openTestCa>[1] = {}, clock?: FakeClock) {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const ca = await openTestCa(dataDir ?? dir, raw, clock);
  teardown(t).after(() => ca.close());
  const svid = new ServerSvid(ca.ca, 'east', 24 * H, ca.clock, silentLogger());
  svid.followTaints();
  teardown(t).after(() => svid.stop());
  const issued: string[] = [];
  svid.onChange((id) => issued.push(id.certChainPem));
  return { ca, svid, issued };
}

test('a server SVID renewal that keeps failing (no active intermediate) is retried every 60 s and never thrown from its timer', (t) => {
  const testCa = new TestCa('example.org');
  teardown(t).after(() => testCa.dispose());
  const clock = new FakeClock(Date.now());
  let calls = 0;
  let failing = false;
  const ca = {
    trustDomain: 'example.org',
    // Nothing tainted: the renewal at half-life asks (a tainted root may hold it).
    listAuthorities: () => [],
    taintedKeyIds: () => [],
    signX509Svid: () => {
      calls++;
      // After a taint whose replacement could not be issued, the datacenter has no active intermediate.
      if (failing) throw failedPrecondition('no active intermediate CA for datacenter "east"');
      return { chain: [testCa.rootDer], notAfter: clock.now() + 2 * H };
    },
  } as unknown as CaManager;
  const svid = new ServerSvid(ca, 'east', 2 * H, clock, silentLogger());
  teardown(t).after(() => svid.stop());
  svid.identity();
  failing = true;
  clock.advance(H); // the renewal at half-life fails
  assert.equal(calls, 2);
  clock.advance(60_000); // its retry fails too, and must not escape the timer
  clock.advance(60_000);
  assert.equal(calls, 4);
  failing = false;
  clock.advance(60_000);
  assert.equal(calls, 5);
  assert.ok(svid.identity().notAfter > clock.now(), 'renewed once the CA could sign again');
});

test('the server SVID is re-issued at once when an authority in its chain is tainted, not at its half-life', async (t) => {
  const { ca, svid, issued } = await followingSvid(t);
  const first = svid.identity();
  const chainOf = (pem: string) => pemToDerList(pem);

  // A taint elsewhere (the other datacenter's intermediate) leaves it alone.
  const west = ca.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'west')!;
  await ca.ca.taint(west.id);
  assert.equal(svid.identity(), first);

  const east = ca.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
  await ca.ca.taint(east.id);
  const renewed = svid.identity();
  assert.notEqual(renewed.certChainPem, first.certChainPem, 're-issued without waiting for the clock');
  const tainted = new Set(ca.ca.taintedKeyIds());
  assert.ok(chainNamesKeyId(chainOf(first.certChainPem), tainted));
  assert.ok(!chainNamesKeyId(chainOf(renewed.certChainPem), tainted), 'the new SVID is off the tainted intermediate');
  assert.equal(issued.length, 2, 'listeners (the TLS layers) were handed the new one');
});

test('taints arriving while renewals fail keep one retry chain, and stop() ends it and the taint following', (t) => {
  const testCa = new TestCa('example.org');
  teardown(t).after(() => testCa.dispose());
  const clock = new FakeClock(Date.now());
  let calls = 0;
  let failing = false;
  const changeListeners = new Set<() => void>();
  const ca = {
    trustDomain: 'example.org',
    signX509Svid: () => {
      calls++;
      if (failing) throw failedPrecondition('no active intermediate CA for datacenter "east"');
      return { chain: [testCa.rootDer], notAfter: clock.now() + 2 * H };
    },
    // Every chain counts as tainted: each CA change asks for a re-issue.
    taintedKeyIds: () => [parseCaCertificate(testCa.rootDer).subjectKeyId!],
    onChange: (l: () => void) => (changeListeners.add(l), () => changeListeners.delete(l)),
  } as unknown as CaManager;
  const svid = new ServerSvid(ca, 'east', 2 * H, clock, silentLogger());
  svid.followTaints();
  svid.identity();
  failing = true;
  for (let i = 0; i < 3; i++) for (const l of changeListeners) l();
  assert.equal(calls, 4, 'one attempt per change');
  clock.advance(60_000);
  assert.equal(calls, 5, 'then one retry a minute, not one per change');
  svid.stop();
  assert.equal(changeListeners.size, 0, 'stop() stops following taints');
  clock.advance(10 * 60_000);
  assert.equal(calls, 5, 'and ends the retries');
});

test('a tainted root: the server SVID stays on it while it is published, and moves to the new root once it is revoked', async (t) => {
  const { ca, svid } = await followingSvid(t);
  const first = svid.identity();
  const rootOf = (pem: string) => parseCaCertificate(pemToDerList(pem)[1]!).authorityKeyId;
  const oldRoot = ca.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;

  await ca.ca.taint(oldRoot.id);
  // An agent restarting now may hold only the old root: the server must still be one it can authenticate.
  assert.equal(svid.identity(), first, 'kept on the tainted root while the bundle publishes it');
  assert.notEqual(ca.ca.activeIntermediate('east')!.authorityKeyId, rootOf(first.certChainPem), 'a re-issue would have moved roots');

  await ca.ca.revoke(oldRoot.id);
  const moved = svid.identity();
  assert.notEqual(moved, first, 're-issued once the root left the bundle');
  assert.equal(rootOf(moved.certChainPem), ca.ca.activeIntermediate('east')!.authorityKeyId);
});

test('after a normal root switch, a taint of the intermediate the server SVID chains to re-issues it at once', async (t) => {
  const { ca, svid } = await followingSvid(t, undefined, { root_activation_delay: '1h' } as never);
  svid.identity();
  await ca.ca.rotateRoot();
  ca.clock.advance(2 * H);
  await ca.ca.recheck();
  const before = svid.identity();
  const chainOf = (pem: string) => pemToDerList(pem);
  const intermediate = parseCaCertificate(chainOf(before.certChainPem)[1]!).subjectKeyId;
  const held = ca.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.certDer !== undefined && parseCaCertificate(a.certDer).subjectKeyId === intermediate)!;
  await ca.ca.taint(held.id);
  // Its root is not tainted: nothing to keep it for, even though the active intermediate now hangs from another root.
  assert.ok(!chainNamesKeyId(chainOf(svid.identity().certChainPem), new Set(ca.ca.taintedKeyIds())), 'off the tainted intermediate');
});

/** A corporate root and a mesh CA it issued, in a temp dir, as the server's upstream_ca settings. */
function upstreamPki(t: TestContext) {
  const { dir, cleanup } = tempDir('meshid-svid-upstream-');
  teardown(t).after(cleanup);
  const root = opensslCa(dir, 'Corporate Root');
  const meshCa = opensslCa(dir, 'Mesh CA', { issuer: root });
  const chainFile = path.join(dir, 'mesh-chain.pem');
  fs.writeFileSync(chainFile, fs.readFileSync(meshCa.cert, 'utf8') + fs.readFileSync(root.cert, 'utf8'));
  return { dir, upstream: { upstream_ca_cert: chainFile, upstream_ca_key: meshCa.key, upstream_bundle: root.cert } };
}

test('under an upstream PKI, a change elsewhere (the other datacenter) leaves the server SVID alone', async (t) => {
  const { dir, upstream } = upstreamPki(t);
  const { ca, svid, issued } = await followingSvid(t, path.join(dir, 'data'), upstream, new FakeClock(Date.now()));
  svid.identity();
  const west = ca.ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'west')!;
  await ca.ca.taint(west.id);
  assert.equal(issued.length, 1, 'not re-issued: its root, the upstream-issued CA, is still held');
});

/** A data dir and clock kept across "restarts": each start() opens the CA on it and a ServerSvid saving to it. */
function restartableServer(t: TestContext, raw: Parameters<typeof openTestCa>[1] = {}, clock = new FakeClock(Date.UTC(2026, 0, 1))) {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const file = path.join(dir, 'server-svid.json');
  let stopPrevious: (() => Promise<void>) | undefined;
  const start = async () => {
    await stopPrevious?.();
    const ca = await openTestCa(dir, raw, clock);
    const svid = new ServerSvid(ca.ca, 'east', 24 * H, clock, silentLogger(), file);
    svid.followTaints();
    stopPrevious = async () => {
      svid.stop();
      await ca.close();
    };
    return { ca: ca.ca, svid };
  };
  const stop = async () => {
    await stopPrevious?.();
    stopPrevious = undefined;
  };
  teardown(t).after(stop);
  return { start, stop, clock, file };
}

const rootKeyIdOf = (chainPem: string) => parseCaCertificate(pemToDerList(chainPem)[1]!).authorityKeyId;

test('a restarted server presents the server SVID it saved (0600), not a new one', async (t) => {
  const server = restartableServer(t);
  const first = (await server.start()).svid.identity();
  assert.equal(fs.statSync(server.file).mode & 0o777, 0o600);
  server.clock.advance(H);
  const again = (await server.start()).svid.identity();
  assert.equal(again.certChainPem, first.certChainPem);
  assert.equal(again.privateKeyPem, first.privateKeyPem);
});

test('a tainted root still published: the server SVID is not moved off it at its half-life, only at 90 % of its life', async (t) => {
  const { ca, svid, issued } = await followingSvid(t);
  const first = svid.identity();
  const oldRoot = ca.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  await ca.ca.taint(oldRoot.id);

  // An agent down across the taint holds only the old root: at the half-life a move would strand it.
  ca.clock.advance(12 * H + 60_000);
  assert.equal(svid.identity(), first, 'kept on the tainted root past its half-life');
  assert.equal(issued.length, 1);
  ca.clock.advance(10 * H);
  const moved = svid.identity();
  assert.notEqual(moved, first, 're-issued at 90 % of its life, while it is still valid');
  assert.equal(rootKeyIdOf(moved.certChainPem), ca.ca.activeIntermediate('east')!.authorityKeyId);
});

test('a server restarted after a root taint (its bundle push maybe never sent) stays on the tainted root until `ca revoke`', async (t) => {
  const server = restartableServer(t);
  let { ca, svid } = await server.start();
  const first = svid.identity();
  const oldRoot = ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  await ca.taint(oldRoot.id);

  // Killed here: agents that missed the push trust only the old root, so the restarted server must still chain to it.
  ({ ca, svid } = await server.start());
  const restarted = svid.identity();
  assert.equal(restarted.certChainPem, first.certChainPem, 'the saved SVID, on the tainted root');
  assert.notEqual(ca.activeIntermediate('east')!.authorityKeyId, rootKeyIdOf(first.certChainPem), 'a new SVID would be on the new root');

  await ca.revoke(oldRoot.id);
  ({ ca, svid } = await server.start());
  const moved = svid.identity();
  assert.equal(rootKeyIdOf(moved.certChainPem), ca.activeIntermediate('east')!.authorityKeyId, 'revoked root: a new SVID, on the new root');
  assert.equal(JSON.parse(fs.readFileSync(server.file, 'utf8')).chain_pem, moved.certChainPem, 'and saved in its place');
});

test('a saved server SVID that is expired, on a tainted intermediate, corrupt or another ID is replaced at start', async (t) => {
  const server = restartableServer(t);
  let { ca, svid } = await server.start();
  const first = svid.identity();

  await server.stop();
  server.clock.advance(25 * H); // down past its notAfter
  ({ ca, svid } = await server.start());
  const afterExpiry = svid.identity();
  assert.notEqual(afterExpiry.certChainPem, first.certChainPem, 'expired: replaced');
  assert.ok(afterExpiry.notAfter > server.clock.now());

  const east = ca.listAuthorities().find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active')!;
  await ca.taint(east.id);
  const offTainted = svid.identity();
  ({ ca, svid } = await server.start());
  assert.equal(svid.identity().certChainPem, offTainted.certChainPem, 'the re-issue after the taint was saved');
  assert.ok(!chainNamesKeyId(pemToDerList(svid.identity().certChainPem), new Set(ca.taintedKeyIds())));

  const saved = JSON.parse(fs.readFileSync(server.file, 'utf8')) as { chain_pem: string; key_pem: string };
  const tampered: Array<[string, string]> = [
    ['corrupt', '{"chain_pem": "-----BEGIN CERT'],
    ['key of another', JSON.stringify({ ...saved, key_pem: exportPkcs8Pem(generateKeyPair('ec-p256').privateKey) })],
    ['not JSON', 'not json'],
  ];
  for (const [what, content] of tampered) {
    fs.writeFileSync(server.file, content);
    ({ ca, svid } = await server.start());
    const replaced = svid.identity();
    assert.notEqual(replaced.certChainPem, saved.chain_pem, `${what}: replaced`);
    assert.equal(JSON.parse(fs.readFileSync(server.file, 'utf8')).chain_pem, replaced.certChainPem, `${what}: the replacement saved`);
  }
});

test('a server SVID saved under another trust domain is not presented', async (t) => {
  const server = restartableServer(t);
  const foreign = new TestCa('other.example');
  teardown(t).after(() => foreign.dispose());
  const { svid } = await server.start();
  const own = svid.identity();
  const leaf = foreign.issue('spiffe://other.example/meshid/server');
  const chainPem = certificatesToPem(leaf.chain);
  fs.writeFileSync(server.file, JSON.stringify({ chain_pem: chainPem, key_pem: toPem('PRIVATE KEY', leaf.privateKey) }));
  const restarted = (await server.start()).svid.identity();
  assert.notEqual(restarted.certChainPem, chainPem, 'not presented');
  assert.notEqual(restarted.certChainPem, own.certChainPem, 'a new one issued');
  assert.equal(parseCertificate(pemToDerList(restarted.certChainPem)[0]!).uriSans[0], 'spiffe://example.org/meshid/server');
});

test('under an upstream PKI, a restarted server presents its saved SVID too', async (t) => {
  const { upstream } = upstreamPki(t);
  const server = restartableServer(t, upstream as never, new FakeClock(Date.now()));
  const first = (await server.start()).svid.identity();
  assert.ok(pemToDerList(first.certChainPem).length >= 3, 'chains up through the upstream-issued CA');
  assert.equal((await server.start()).svid.identity().certChainPem, first.certChainPem);
});

/** A mesh CA that corporate PKI root `corporate` issued, as upstream_ca settings publishing `bundle` (a PEM file). */
function upstreamUnder(dir: string, name: string, corporate: OpensslCaFiles, bundle = corporate.cert) {
  const meshCa = opensslCa(dir, name, { issuer: corporate });
  const chainFile = path.join(dir, `${name}-chain.pem`);
  fs.writeFileSync(chainFile, fs.readFileSync(meshCa.cert, 'utf8') + fs.readFileSync(corporate.cert, 'utf8'));
  return { upstream_ca_cert: chainFile, upstream_ca_key: meshCa.key, upstream_bundle: bundle };
}

/**
 * A server SVID saved under upstream CA `first`, then the server restarted with `second` (as `ca taint` of the old one
 * asks) and presenting the saved SVID again, following taints. Made after both CA certificates, the clock starts
 * after them: each is valid from the second it was made.
 */
async function restartedOnNewUpstream(t: TestContext, dir: string, first: ReturnType<typeof upstreamUnder>, second: ReturnType<typeof upstreamUnder>) {
  const clock = new FakeClock(Date.now() + 1000);
  const data = path.join(dir, 'data');
  const file = path.join(dir, 'server-svid.json');
  const before = await openTestCa(data, first, clock);
  const oldSvid = new ServerSvid(before.ca, 'east', 24 * H, clock, silentLogger(), file).identity();
  const oldRoot = before.ca.listAuthorities().find((a) => a.kind === 'root')!;
  const oldAgentBundle = before.ca.bundle().x509Authorities;
  await before.close();
  const after = await openTestCa(data, second, clock);
  teardown(t).after(() => after.close());
  const svid = new ServerSvid(after.ca, 'east', 24 * H, clock, silentLogger(), file);
  svid.followTaints();
  teardown(t).after(() => svid.stop());
  assert.equal(svid.identity().certChainPem, oldSvid.certChainPem, 'the saved SVID, on the old upstream CA, is presented after the restart');
  return { ca: after.ca, svid, oldSvid, oldRoot, oldAgentBundle, clock, file };
}

test('under an upstream PKI, a taint of the upstream-issued CA moves the server SVID at once: its replacement hangs from the same PKI root', async (t) => {
  const { dir, cleanup } = tempDir('meshid-svid-upstream-switch-');
  teardown(t).after(cleanup);
  const corporate = opensslCa(dir, 'Corporate Root');
  const { ca, svid, oldRoot } = await restartedOnNewUpstream(t, dir, upstreamUnder(dir, 'Mesh CA 1', corporate), upstreamUnder(dir, 'Mesh CA 2', corporate));
  const issued: string[] = [];
  svid.onChange((id) => issued.push(id.certChainPem));
  await ca.taint(oldRoot.id);
  assert.equal(issued.length, 1, 're-issued at once, not kept on the tainted upstream CA until its half-life');
  const chain = pemToDerList(issued[0]!);
  assert.ok(!chainNamesKeyId(chain, new Set(ca.taintedKeyIds())), 'the new chain names no tainted authority');
  // Every agent already trusts the corporate root: the new chain verifies against the bundle the old one did.
  const verified = opensslVerify({ roots: pemToDerList(fs.readFileSync(corporate.cert, 'utf8')), intermediates: chain.slice(1), leaf: chain[0]!, purpose: 'sslserver' });
  assert.ok(verified.ok, verified.output);
});

test('under an upstream PKI, a taint of the upstream-issued CA keeps the server SVID on it when the replacement ends at a PKI root the old chains did not', async (t) => {
  const { dir, cleanup } = tempDir('meshid-svid-upstream-newroot-');
  teardown(t).after(cleanup);
  // The corporate PKI rotates its own root: the second mesh CA is issued under the new one, and the upstream bundle
  // lists both roots while they overlap. Agents that never stored the bundle with the new root trust the old one only.
  const [oldCorporate, newCorporate] = [opensslCa(dir, 'Corporate Root 2019'), opensslCa(dir, 'Corporate Root 2025')];
  const bothRoots = path.join(dir, 'both-roots.pem');
  fs.writeFileSync(bothRoots, fs.readFileSync(oldCorporate.cert, 'utf8') + fs.readFileSync(newCorporate.cert, 'utf8'));
  const { ca, svid, oldSvid, oldRoot, oldAgentBundle, clock, file } = await restartedOnNewUpstream(
    t,
    dir,
    upstreamUnder(dir, 'Mesh CA 1', oldCorporate),
    upstreamUnder(dir, 'Mesh CA 2', newCorporate, bothRoots),
  );
  await ca.taint(oldRoot.id);
  const chain = pemToDerList(svid.identity().certChainPem);
  // An agent that stored only the bundle of before the restart must still authenticate the server.
  const verified = opensslVerify({ roots: oldAgentBundle, intermediates: chain.slice(1), leaf: chain[0]!, purpose: 'sslserver' });
  assert.ok(verified.ok, `the server SVID moved to a chain an agent holding the old bundle cannot verify: ${verified.output}`);
  assert.equal(svid.identity().certChainPem, oldSvid.certChainPem, 'kept on the tainted CA while it is published');

  // A restart while the taint stands presents the saved SVID too, rather than minting one on the new PKI root.
  const restarted = new ServerSvid(ca, 'east', 24 * H, clock, silentLogger(), file);
  teardown(t).after(() => restarted.stop());
  assert.equal(restarted.identity().certChainPem, oldSvid.certChainPem);
});
