/**
 * Switching the upstream CA off (SPIRE: removing the UpstreamAuthority): a restart without --upstream-ca-cert/-key
 * goes back to a root of meshid's own, published at once and signing after root_activation_delay, drops an upstream
 * root that was only prepared, and tells the operator. The upstream PKI is made with the openssl CLI; the CA runs on
 * a real datastore and key store with a FakeClock (started at real time: openssl dates the upstream CA from now).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { FakeClock } from '../../../src/common/clock.js';
import { createLogger } from '../../../src/common/log.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { pemToDerList } from '../../../src/common/x509/pem.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { verifyChain } from '../../../src/common/x509/chain-verification.js';
import type { CaManager } from '../../../src/server/ca/ca-manager.js';
import type { CaRecord } from '../../../src/server/ca/ca-journal.js';
import { opensslCa } from '../../support/openssl.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import { teardown } from '../../support/teardown.js';

const H = 3_600_000;
const D = 24 * H;

const der = (file: string): Buffer => pemToDerList(fs.readFileSync(file, 'utf8'))[0]!;

/** A logger whose warnings are kept. */
function recordingLogger(): { log: ReturnType<typeof createLogger>; warnings: string[] } {
  const warnings: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      const line = JSON.parse(chunk.toString()) as { level: number; msg: string };
      if (line.level === 40) warnings.push(line.msg);
      done();
    },
  });
  return { log: createLogger({ name: 'test', destination }), warnings };
}

function roots(ca: CaManager): CaRecord[] {
  return ca.listAuthorities().filter((a) => a.kind === 'root');
}

function rootIn(ca: CaManager, state: CaRecord['state']): CaRecord | undefined {
  return roots(ca).find((r) => r.state === state);
}

/** The bundle anchor an east SVID signed now verifies against. */
function anchorOfNewSvid(ca: CaManager, now: number): Buffer {
  const { publicKey } = generateKeyPair('ec-p256');
  const chain = ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/w', ttlMs: H }).chain;
  const anchor = ca.bundle().x509Authorities.find((r) => {
    try {
      verifyChain(chain, [r], now);
      return true;
    } catch {
      return false;
    }
  });
  assert.ok(anchor, 'the SVID verifies against the bundle');
  return anchor;
}

/** A self-signed upstream CA (no --upstream-bundle: the journal row carries no upstream chain or anchors). */
function selfSignedUpstream(dir: string) {
  const upstream = opensslCa(dir, 'Mesh Root');
  return { upstream, flags: { upstream_ca_cert: upstream.cert, upstream_ca_key: upstream.key }, data: path.join(dir, 'data'), clock: new FakeClock(Date.now()) };
}

/** A data dir (removed after the test) whose CA has run under a self-signed upstream CA, and the root it made active. */
async function startedUnderUpstream(t: TestContext, prefix: string) {
  const { dir, cleanup } = tempDir(prefix);
  teardown(t).after(cleanup);
  const { upstream, flags, data, clock } = selfSignedUpstream(dir);
  const first = await openTestCa(data, flags, clock);
  const upstreamRoot = rootIn(first.ca, 'active')!;
  const sequence = first.ca.bundle().sequence;
  await first.close();
  return { upstream, flags, data, clock, upstreamRoot, sequence };
}

test('a restart without the upstream flags publishes a meshid root at once, moves signing to it after root_activation_delay, warns, and the key copy leaves', async (t) => {
  const { upstream, data, clock, upstreamRoot, sequence } = await startedUnderUpstream(t, 'meshid-upstream-off-');

  clock.advance(H);
  const { log, warnings } = recordingLogger();
  const off = await openTestCa(data, {}, clock, log);
  teardown(t).after(() => off.close());
  const own = rootIn(off.ca, 'prepared');
  assert.ok(own, 'a root of meshid is prepared at start');
  assert.equal(own.createdAt, clock.now());
  assert.match(parseCertificate(own.certDer!).subject, /^O=meshid, CN=meshid root CA/);
  assert.equal(rootIn(off.ca, 'active')!.id, upstreamRoot.id, 'the upstream CA signs until the activation delay');
  assert.deepEqual(off.ca.bundle().x509Authorities, [der(upstream.cert), own.certDer], 'published at once, beside the upstream CA');
  assert.equal(off.ca.bundle().sequence, sequence + 1);
  const takeover = new Date(clock.now() + D).toISOString();
  const notice = warnings.find((w) => w.startsWith('started without --upstream-ca-cert/--upstream-ca-key'));
  assert.ok(notice, `warned at start: ${JSON.stringify(warnings)}`);
  for (const part of [upstreamRoot.id, own.id, takeover, off.keys.fileOf(upstreamRoot.keyId), `ca taint --id ${upstreamRoot.id}`, `ca revoke --id ${upstreamRoot.id}`]) {
    assert.ok(notice.includes(part), `the warning names ${part}: ${notice}`);
  }

  clock.advance(D - 60_000);
  await off.ca.rotateNow();
  assert.equal(rootIn(off.ca, 'active')!.id, upstreamRoot.id, 'not before root_activation_delay');
  clock.advance(60_000);
  await off.ca.rotateNow();
  assert.equal(rootIn(off.ca, 'active')!.id, own.id, 'meshid root active after root_activation_delay');
  assert.equal(roots(off.ca).find((r) => r.id === upstreamRoot.id)?.state, 'old');

  // Chains move as the intermediates under the upstream CA rotate; once the last has expired, the CA and the copy
  // of its key leave.
  let day = 0;
  for (; day < 20 && roots(off.ca).some((r) => r.id === upstreamRoot.id); day++) {
    clock.advance(D);
    await off.ca.rotateNow();
  }
  assert.ok(day < 20, 'the upstream CA left the journal');
  assert.deepEqual(anchorOfNewSvid(off.ca, clock.now()), own.certDer);
  assert.ok(!off.ca.bundle().x509Authorities.some((r) => r.equals(der(upstream.cert))), 'the upstream CA left the bundle');
  assert.equal(fs.existsSync(off.keys.fileOf(upstreamRoot.keyId)), false, 'the key copy is deleted');
});

test('an upstream root that was only prepared is dropped by a restart without the flags and never takes over', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-off-prepared-');
  teardown(t).after(cleanup);
  const { upstream, flags, data, clock } = selfSignedUpstream(dir);
  const plain = await openTestCa(data, {}, clock);
  const own = rootIn(plain.ca, 'active')!;
  await plain.close();

  const on = await openTestCa(data, flags, clock);
  const prepared = rootIn(on.ca, 'prepared')!;
  assert.ok(prepared.certDer!.equals(der(upstream.cert)), 'switched on: the upstream CA is prepared');
  await on.close();

  clock.advance(H);
  const { log, warnings } = recordingLogger();
  const off = await openTestCa(data, {}, clock, log);
  teardown(t).after(() => off.close());
  assert.deepEqual(roots(off.ca).map((r) => `${r.id} ${r.state}`), [`${own.id} active`]);
  assert.deepEqual(off.ca.bundle().x509Authorities, [own.certDer], 'the upstream CA leaves the bundle');
  assert.equal(fs.existsSync(off.keys.fileOf(prepared.keyId)), false, 'and its key copy the disk');
  assert.ok(warnings.some((w) => w.includes(`dropped prepared root ${prepared.id}, an upstream CA`)), JSON.stringify(warnings));
  assert.ok(!warnings.some((w) => w.startsWith('started without')), 'no upstream CA is left to warn about');

  clock.advance(2 * D);
  await off.ca.rotateNow();
  assert.equal(rootIn(off.ca, 'active')!.id, own.id, 'the meshid root stays active past the activation delay');
});

test('switched back on before the meshid root took over: that root is dropped and the upstream CA keeps signing', async (t) => {
  const { upstream, flags, data, clock, upstreamRoot } = await startedUnderUpstream(t, 'meshid-upstream-off-on-');
  const off = await openTestCa(data, {}, clock);
  const own = rootIn(off.ca, 'prepared');
  assert.ok(own, 'switched off: a meshid root is prepared');
  await off.close();

  clock.advance(H);
  const { log, warnings } = recordingLogger();
  const on = await openTestCa(data, flags, clock, log);
  teardown(t).after(() => on.close());
  assert.deepEqual(roots(on.ca).map((r) => `${r.id} ${r.state}`), [`${upstreamRoot.id} active`]);
  assert.deepEqual(on.ca.bundle().x509Authorities, [der(upstream.cert)]);
  assert.ok(warnings.some((w) => w.includes(`dropped prepared root ${own.id}, made by meshid`)), JSON.stringify(warnings));
  clock.advance(2 * D);
  await on.ca.rotateNow();
  assert.equal(rootIn(on.ca, 'active')!.id, upstreamRoot.id);
});

test('roots journaled before the root source was recorded are classified by their certificate', async (t) => {
  const { dir, cleanup } = tempDir('meshid-upstream-off-legacy-');
  teardown(t).after(cleanup);
  const { flags, data, clock } = selfSignedUpstream(dir);
  const plainData = path.join(dir, 'plain');
  const forgetSource = (dataDir: string): void => {
    const db = new Database(path.join(dataDir, 'datastore.sqlite3'));
    db.prepare('UPDATE ca_records SET upstream_ca = NULL').run();
    db.close();
  };
  await (await openTestCa(data, flags, clock)).close();
  await (await openTestCa(plainData, {}, clock)).close();
  forgetSource(data);
  forgetSource(plainData);

  const { log, warnings } = recordingLogger();
  const off = await openTestCa(data, {}, clock, log);
  teardown(t).after(() => off.close());
  assert.ok(rootIn(off.ca, 'prepared'), 'a self-signed CA without meshid root subject came from upstream files');
  assert.ok(warnings.some((w) => w.startsWith('started without')));

  const quiet = recordingLogger();
  const plain = await openTestCa(plainData, {}, clock, quiet.log);
  teardown(t).after(() => plain.close());
  assert.deepEqual(roots(plain.ca).map((r) => r.state), ['active'], 'a root meshid made is left alone');
  assert.deepEqual(quiet.warnings, []);
});

test('the warning\'s way out works: after the takeover, ca taint then ca revoke of the upstream CA deletes the key copy at once', async (t) => {
  const { upstream, data, clock, upstreamRoot } = await startedUnderUpstream(t, 'meshid-upstream-off-revoke-');
  const off = await openTestCa(data, {}, clock);
  teardown(t).after(() => off.close());
  const own = rootIn(off.ca, 'prepared')!;
  clock.advance(D);
  await off.ca.rotateNow();
  assert.equal(rootIn(off.ca, 'active')!.id, own.id);

  await off.ca.taint(upstreamRoot.id);
  assert.deepEqual(anchorOfNewSvid(off.ca, clock.now()), own.certDer, 'intermediates are re-issued under the meshid root');
  await off.ca.revoke(upstreamRoot.id);
  assert.ok(!roots(off.ca).some((r) => r.id === upstreamRoot.id));
  assert.deepEqual(off.ca.bundle().x509Authorities, [own.certDer]);
  assert.ok(!off.ca.bundle().x509Authorities.some((r) => r.equals(der(upstream.cert))));
  assert.equal(fs.existsSync(off.keys.fileOf(upstreamRoot.keyId)), false);
});
