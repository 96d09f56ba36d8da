/**
 * kill -9 of meshid-server while it signs and rotates authorities: every restart must find keys matching their
 * certificates (startup refuses otherwise), exactly one active authority of each kind, and a bundle that agrees with
 * the CA journal. A root revoke killed after its commit is kept, and its key swept, by the restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { KILL_AT_POINT_PRELOAD, runServerKilledAt } from '../support/killed-server.js';
import { teardown } from '../support/teardown.js';

interface Authority {
  id: string;
  kind: string;
  datacenter: string;
  state: string;
  fingerprint: string;
}

test('kill -9 during signing, taints, root rotations and activations never leaves keys, journal and bundle out of step', { timeout: 180_000 }, async () => {
  const { dir, cleanup } = tempDir('meshid-server-crash-');
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  // The round's server and connection, until the kill: a failed check before it must not leave the server running.
  let running: { server: ServerProcess; admin: AdminClient } | undefined;
  try {
    for (let round = 0; round < 6; round++) {
      const server = await startServerProcess(dir);
      // A connection of its own: the shared one to the same path may still be backing off from the killed server.
      const admin = new AdminClient(server.adminSocket, 10_000, { 'grpc.use_local_subchannel_pool': 1 });
      running = { server, admin };
      // Consistency of what the previous crash left.
      const authorities = ((await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []) as Authority[];
      const active = (kind: string, dc = ''): number => authorities.filter((a) => a.kind === kind && a.datacenter === dc && a.state === 'active').length;
      assert.equal(active('root'), 1, `round ${round}: one active root`);
      assert.equal(active('intermediate', 'east'), 1, `round ${round}: one active east intermediate`);
      assert.equal(active('intermediate', 'west'), 1, `round ${round}: one active west intermediate`);
      assert.equal(active('jwt'), 1, `round ${round}: one active JWT key`);
      const bundle = await admin.call('Bundles', 'GetBundle', {});
      const bundleRoots = new Set((bundle.x509_authorities ?? []).map((d: Buffer) => parseCertificate(d).fingerprintSha256));
      for (const r of authorities.filter((a) => a.kind === 'root')) {
        assert.ok(bundleRoots.has(r.fingerprint), `round ${round}: root ${r.id} (${r.state}) is in the bundle`);
      }
      assert.equal(bundleRoots.size, authorities.filter((a) => a.kind === 'root').length, `round ${round}: the bundle holds no root the journal does not`);
      const keyFiles = fs.readdirSync(path.join(server.dataDir, 'ca', 'keys')).filter((f) => !f.startsWith('.'));
      assert.equal(keyFiles.length, authorities.length, `round ${round}: one key file per authority, no orphans`);
      assert.equal(pemToDerList((await server.cli(['bundle', 'show'])).out).length, bundleRoots.size);

      // Work in flight when the kill lands: mints, taints of an intermediate, root rotations, over the admin API (a
      // CLI process per mint outlasted the whole window: the kill found the server idle between calls). What the kill
      // cuts off fails, as it should; a failure before it is a fault of the running server, and fails the test.
      let killing = false;
      let fault: unknown;
      let batches = 0;
      let firstBatch!: () => void;
      const underWay = new Promise<void>((resolve) => (firstBatch = resolve));
      const busy = (async () => {
        for (let i = 0; ; i++) {
          const list = ((await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []) as Authority[];
          const east = list.find((a) => a.kind === 'intermediate' && a.datacenter === 'east' && a.state === 'active');
          assert.ok(east !== undefined, `round ${round}, batch ${i}: an active east intermediate to taint`);
          // `ca activate` of the root the last rotate-root prepared: a new intermediate for each datacenter, one commit.
          const prepared = list.find((a) => a.kind === 'root' && a.state === 'prepared');
          const [, , minted] = await Promise.all([
            admin.call('Authorities', 'TaintAuthority', { id: east.id }),
            i % 3 === 0
              ? admin.call('Authorities', 'RotateRoot', {})
              : i % 3 === 1 && prepared !== undefined
                ? admin.call('Authorities', 'ActivateRoot', { id: prepared.id })
                : Promise.resolve(),
            admin.call('Svids', 'MintX509Svid', { csr, spiffe_id: `spiffe://example.org/crash/${round}/${i}` }),
          ]);
          assert.ok((minted.svid_chain ?? []).length >= 2, `round ${round}, batch ${i}: a minted SVID with its chain`);
          batches++;
          firstBatch();
        }
      })().catch((err: unknown) => {
        if (!killing) fault = err;
        firstBatch();
      });
      await underWay;
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 600)));
      killing = true;
      await server.stop('SIGKILL');
      admin.close();
      running = undefined;
      await busy;
      if (fault !== undefined) throw fault;
      assert.ok(batches > 0, `round ${round}: the server was busy when killed`);
    }
  } finally {
    running?.admin.close();
    await running?.server.stop('SIGKILL');
    cleanup();
  }
});

// What each point leaves: the marker, and how many key files beside the datastore's empty CA journal.
const FIRST_SETUP_POINTS: Array<{ point: string; marker: boolean; keys: number }> = [
  { point: 'before-marker', marker: false, keys: 0 },
  { point: 'keys:0', marker: true, keys: 0 },
  { point: 'keys:1', marker: true, keys: 1 },
  { point: 'keys:3', marker: true, keys: 3 },
  { point: 'keys:4', marker: true, keys: 4 },
  { point: 'before-marker-removal', marker: true, keys: 4 },
];

for (const { point, marker, keys } of FIRST_SETUP_POINTS) {
  test(`a first start killed (SIGKILL) at ${point} of its CA setup is followed by a start that just works`, { timeout: 60_000 }, async (t) => {
    const { dir, cleanup } = tempDir('meshid-first-start-crash-');
    teardown(t).after(cleanup);
    const killed = await runServerKilledAt(dir, point);
    assert.equal(killed.signal, 'SIGKILL', `killed at ${point}:\n${killed.output}`);
    const caDir = path.join(dir, 'data', 'ca');
    // Checked last, so that what the restart does is what fails first.
    const markerLeft = fs.existsSync(path.join(caDir, 'first-setup'));
    assert.equal(fs.readdirSync(path.join(caDir, 'keys')).filter((f) => f.endsWith('.pem') && !f.startsWith('.')).length, keys, 'key files as the point leaves them');

    const server = await startServerProcess(dir);
    teardown(t).after(() => server.stop());
    const admin = new AdminClient(server.adminSocket, 10_000);
    teardown(t).after(() => admin.close());
    const authorities = ((await admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []) as Authority[];
    assert.deepEqual(authorities.map((a) => `${a.kind}/${a.datacenter}/${a.state}`).sort(), ['intermediate/east/active', 'intermediate/west/active', 'jwt//active', 'root//active']);
    const keyFiles = fs.readdirSync(path.join(caDir, 'keys')).filter((f) => !f.startsWith('.'));
    assert.equal(keyFiles.length, authorities.length, 'one key file per authority: what the killed start wrote is gone or named');
    assert.equal(fs.existsSync(path.join(caDir, 'first-setup')), false, 'no marker once the setup committed');
    // A kill between the marker's temp file and its rename leaves the temp file, which nothing else would ever remove.
    assert.deepEqual(fs.readdirSync(caDir).filter((f) => f.endsWith('.tmp')), [], 'no temp file of the marker left in ca/');
    assert.equal(markerLeft, marker, 'the marker as the point left it');
  });
}

test('a first start killed (SIGKILL) before its data dir marker is in place is followed by a start that just works', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-data-dir-marker-crash-');
  teardown(t).after(cleanup);
  const killed = await runServerKilledAt(dir, 'before-data-dir-marker');
  assert.equal(killed.signal, 'SIGKILL', killed.output);
  const dataDir = path.join(dir, 'data');
  assert.equal(fs.existsSync(path.join(dataDir, 'meshid-server.json')), false, 'killed before the marker was renamed into place');
  // Nothing but its lock file and the marker's temp file is in the data dir: it never served, so the next start must
  // claim it.
  const server = await startServerProcess(dir);
  teardown(t).after(() => server.stop());
  assert.equal(JSON.parse(fs.readFileSync(path.join(dataDir, 'meshid-server.json'), 'utf8')).trust_domain, 'example.org');
  assert.deepEqual(fs.readdirSync(dataDir).filter((f) => f.endsWith('.tmp')), [], 'no temp file of the marker left');
});

test('a root revoke killed (SIGKILL) after its commit is kept by the restart: journal, bundle and revoked roots agree, its key is swept, and sending it again says it was revoked', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir('meshid-revoke-crash-');
  teardown(t).after(cleanup);
  const doomed = await startServerProcess(dir, undefined, { NODE_OPTIONS: `--import ${KILL_AT_POINT_PRELOAD}`, MESHID_TEST_KILL_AT: 'before-root-key-removal' });
  // Should the revoke not reach the point, it would keep serving.
  teardown(t).after(() => doomed.stop('SIGKILL'));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => {
    if (doomed.child.exitCode !== null || doomed.child.signalCode !== null) resolve(doomed.child.signalCode);
    else doomed.child.once('exit', (_code, signal) => resolve(signal));
  });
  const rootId = /^Authority ID +: (root-[0-9a-f]+)$/m.exec((await doomed.cli(['ca', 'show'])).out)![1]!;
  const revokedFingerprint = new RegExp(`^Authority ID +: ${rootId}\\n(?:.*\\n)*?Fingerprint +: ([0-9a-f]+)$`, 'm').exec((await doomed.cli(['ca', 'show'])).out)![1]!;
  assert.equal((await doomed.cli(['ca', 'taint', '--id', rootId])).code, 0);
  const lost = await doomed.cli(['ca', 'revoke', '--id', rootId, '--force']);
  assert.equal(lost.code, 1, 'the answer to the revoke is lost with the server');
  assert.equal(await exited, 'SIGKILL', doomed.output());
  assert.ok(fs.existsSync(path.join(doomed.dataDir, 'ca', 'keys', `${rootId}.pem`)), 'killed before the revoked key left the disk');

  const server = await startServerProcess(dir);
  teardown(t).after(() => server.stop());
  const admin = new AdminClient(server.adminSocket, 10_000);
  teardown(t).after(() => admin.close());
  const listed = await admin.call('Authorities', 'ListAuthorities', {});
  const authorities = (listed.authorities ?? []) as Authority[];
  assert.deepEqual(authorities.filter((a) => a.id === rootId), [], 'the revoke committed: the root left the journal');
  assert.deepEqual(((listed.revoked_roots ?? []) as Array<{ id: string; fingerprint: string }>).map((r) => [r.id, r.fingerprint]), [[rootId, revokedFingerprint]]);
  const bundle = await admin.call('Bundles', 'GetBundle', {});
  const bundleRoots = (bundle.x509_authorities ?? []).map((d: Buffer) => parseCertificate(d).fingerprintSha256).sort();
  assert.deepEqual(bundleRoots, authorities.filter((a) => a.kind === 'root').map((a) => a.fingerprint).sort(), 'the bundle publishes the journal roots, not the revoked one');
  const keyFiles = fs.readdirSync(path.join(server.dataDir, 'ca', 'keys')).filter((f) => !f.startsWith('.'));
  assert.deepEqual(keyFiles.sort(), authorities.map((a) => `${a.id}.pem`).sort(), "one key file per authority: the revoked root's is swept");

  // The operator, who saw the revoke fail, sends it again: told it is done, not that the ID names nothing.
  const again = await server.cli(['ca', 'revoke', '--id', rootId, '--force']);
  assert.equal(again.code, 1);
  assert.match(again.err, new RegExp(`^Error: FailedPrecondition: root ${rootId} was already revoked, at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z: it is in neither the CA journal nor the bundle, and nothing is left to revoke \\(ca show lists it under the revoked roots\\)\\n$`));
});
