/**
 * `federation delete` racing `federation update --bundle-path` or `federation refresh`, on a real in-process server
 * driven by the real CLI, its partner a real https_spiffe endpoint. The race is made deterministic by holding one
 * datastore call of the server until the delete is done (a test-only wrapper around the server's own datastore
 * object, standing in for a datastore slower than SQLite's synchronous one). Whichever order the two commit in, the
 * end state must be one the operator can read from the answers: an update or refresh answered NotFound stored
 * nothing, and one that stored something is answered as done.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { compileServerConfig } from '../../src/server/config.js';
import type { Datastore } from '../../src/server/datastore/datastore.js';
import { MeshidServer } from '../../src/server/server.js';
import { event } from '../support/event.js';
import { TestCa } from '../support/fake-sds-cache.js';
import { partnerEndpoint, type PartnerEndpoint } from '../support/partner-endpoint.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

const TD = 'partner.example';

interface Setup {
  server: MeshidServer;
  endpoint: PartnerEndpoint;
  /** The partner's root before (seeded) and after a rotation (served by the endpoint). */
  oldRoot: Buffer;
  newRoot: Buffer;
  cli: (args: string[]) => Promise<CliResult>;
  dir: string;
}

/** example.org's server (fake clock: no poll runs unless the test asks), a relationship with TD seeded with its old root. */
async function setup(t: TestContext): Promise<Setup> {
  const tmp = tempDir('meshid-federation-race-');
  teardown(t).after(tmp.cleanup);
  const partner = new TestCa(TD);
  const rotated = new TestCa(TD);
  teardown(t).after(() => {
    partner.dispose();
    rotated.dispose();
  });
  const endpoint = await partnerEndpoint(t, partner);
  endpoint.body = bundleToSpiffeJson({ ...partner.bundle(2), x509Authorities: [partner.rootDer, rotated.rootDer] });
  const config = compileServerConfig({
    trust_domain: 'example.org', data_dir: path.join(tmp.dir, 'data'), bind_address: '127.0.0.1:0', admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
  });
  const server = await MeshidServer.start({ config, log: silentLogger(), clock: new FakeClock(Date.now()) });
  teardown(t).after(() => server.stop());
  const cli = (args: string[]): Promise<CliResult> => runNode(SERVER_MAIN, [...args, '--admin-socket', config.adminSocket]);
  const seedFile = path.join(tmp.dir, 'seed.json');
  fs.writeFileSync(seedFile, bundleToSpiffeJson(partner.bundle(1)));
  const created = await cli([
    'federation', 'create', '--trust-domain', TD, '--bundle-endpoint-url', endpoint.url, '--bundle-endpoint-profile', 'https_spiffe',
    '--endpoint-spiffe-id', endpoint.endpointId, '--bundle-path', seedFile,
  ]);
  assert.equal(created.code, 0, created.err);
  return { server, endpoint, oldRoot: partner.rootDer, newRoot: rotated.rootDer, cli, dir: tmp.dir };
}

/**
 * Holds the server's next call of `method` for TD (before the call when `when` is 'before', after its commit when
 * 'after') until release(); `reached` settles once a call is held.
 */
function hold(ds: Datastore, method: 'getBundle' | 'setBundle' | 'updateFederationRelationship', when: 'before' | 'after'): { reached: Promise<void>; release: () => void } {
  let arrive!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((r) => (arrive = r));
  const released = new Promise<void>((r) => (release = r));
  const original = ds[method].bind(ds) as (...args: unknown[]) => Promise<unknown>;
  let held = false;
  Object.assign(ds, {
    [method]: async (...args: unknown[]): Promise<unknown> => {
      const td = typeof args[0] === 'string' ? args[0] : (args[0] as { trustDomain: string }).trustDomain;
      if (held || td !== TD) return original(...args);
      held = true;
      arrive();
      if (when === 'before') {
        await released;
        return original(...args);
      }
      const result = await original(...args);
      await released;
      return result;
    },
  });
  return { reached, release };
}

const storedRoots = async (ds: Datastore): Promise<Buffer[] | undefined> => (await ds.getBundle(TD))?.x509Authorities;

test('federation update --bundle-path that a delete overtakes fails NotFound and stores nothing of its bundle', async (t) => {
  const { server, cli, dir, oldRoot, newRoot } = await setup(t);
  const newSeed = path.join(dir, 'new-seed.json');
  fs.writeFileSync(newSeed, bundleToSpiffeJson({ trustDomain: TD, x509Authorities: [oldRoot, newRoot], jwtAuthorities: [], sequence: 2 }));
  // The update reads the stored bundle first (its seed's sequence follows it): held there while the delete runs.
  const gate = hold(server.ds, 'getBundle', 'before');
  const update = cli([
    'federation', 'update', '--trust-domain', TD, '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web',
    '--bundle-path', newSeed,
  ]);
  await event('the update reading the stored bundle', gate.reached);
  const deleted = await cli(['federation', 'delete', '--trust-domain', TD]);
  assert.equal(deleted.code, 0, deleted.err);
  gate.release();
  const updated = await update;
  assert.notEqual(updated.code, 0);
  assert.match(updated.err, /^Error: NotFound: .*partner\.example/);
  assert.deepEqual(await storedRoots(server.ds), [oldRoot], 'the bundle the delete left, not the failed update\'s');
  assert.deepEqual((await server.ds.listFederationRelationships()).map((r) => r.trustDomain), []);
  assert.equal(server.federation.status(TD), undefined, 'not polled');
});

test('federation update --bundle-path that commits before a delete overtakes it is done, and the delete leaves nothing polled', async (t) => {
  const { server, cli, dir, oldRoot, newRoot } = await setup(t);
  const newSeed = path.join(dir, 'new-seed.json');
  fs.writeFileSync(newSeed, bundleToSpiffeJson({ trustDomain: TD, x509Authorities: [oldRoot, newRoot], jwtAuthorities: [], sequence: 2 }));
  // The update has committed (relationship and bundle); it is held before it hands the new settings to the poller.
  const gate = hold(server.ds, 'updateFederationRelationship', 'after');
  const update = cli([
    'federation', 'update', '--trust-domain', TD, '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web',
    '--bundle-path', newSeed,
  ]);
  await event('the update committing', gate.reached);
  const deleted = await cli(['federation', 'delete', '--trust-domain', TD]);
  assert.equal(deleted.code, 0, deleted.err);
  gate.release();
  const updated = await update;
  assert.equal(updated.code, 0, `committed, so done: ${updated.err}`);
  assert.deepEqual(await storedRoots(server.ds), [oldRoot, newRoot], 'the update\'s bundle, which the delete left as it leaves any');
  assert.deepEqual(await server.ds.listFederationRelationships(), []);
  assert.equal(server.federation.status(TD), undefined, 'the deleted relationship is not polled (nor listed) again');
});

test('a refresh whose poll a delete overtakes before it stores fails NotFound and stores nothing', async (t) => {
  const { server, cli, oldRoot } = await setup(t);
  // The poll has fetched and checked its relationship is current; its store is held while the delete runs.
  const gate = hold(server.ds, 'setBundle', 'before');
  const refresh = cli(['federation', 'refresh', '--trust-domain', TD]);
  await event('the poll storing what it fetched', gate.reached);
  const deleted = await cli(['federation', 'delete', '--trust-domain', TD]);
  assert.equal(deleted.code, 0, deleted.err);
  gate.release();
  const refreshed = await refresh;
  assert.notEqual(refreshed.code, 0);
  assert.match(refreshed.err, /^Error: NotFound: partner\.example has no federation relationship/);
  assert.deepEqual(await storedRoots(server.ds), [oldRoot], 'nothing fetched for a deleted relationship is stored');
});

test('a refresh whose bundle was stored before a delete overtook its answer is answered as done', async (t) => {
  const { server, cli, oldRoot, newRoot } = await setup(t);
  const gate = hold(server.ds, 'setBundle', 'after');
  const refresh = cli(['federation', 'refresh', '--trust-domain', TD, '--output', 'json']);
  await event('the poll having stored what it fetched', gate.reached);
  const deleted = await cli(['federation', 'delete', '--trust-domain', TD]);
  assert.equal(deleted.code, 0, deleted.err);
  gate.release();
  const refreshed = await refresh;
  assert.equal(refreshed.code, 0, `stored, so done: ${refreshed.err}`);
  assert.deepEqual(JSON.parse(refreshed.out), { code: 0, message: 'OK' });
  assert.deepEqual(await storedRoots(server.ds), [oldRoot, newRoot]);
  assert.equal(server.federation.status(TD), undefined, 'deleted after the refresh, and not polled again');
});
