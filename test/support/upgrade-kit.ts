/**
 * Upgrading in place, shared by upgrade.test.ts (fixtures of schema version 5 and later, and any new one) and
 * upgrade-early-schemas.test.ts (schema versions 1 to 4), each a fixture's test (see upgrade.test.ts for what it
 * checks): split in two so that neither file nears the runner's time limit on a loaded machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { packageRoot } from '../../src/common/paths.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { LATEST_SCHEMA_VERSION } from '../../src/server/datastore/migrations.js';
import { AGENT_MAIN, Cluster, startCluster, startServerProcess } from './cluster.js';
import { fakeWallClock, libfaketimeSkip } from './fake-wall-clock.js';
import { runServerKilledAt } from './killed-server.js';
import { nextOutputOr } from './next-output.js';
import { opensslVerify } from './openssl.js';
import { tempDir } from './server-kit.js';
import { runNode } from './server-process.js';
import { teardown } from './teardown.js';

interface Fixture {
  commit: string;
  madeAt: string;
  uid: number;
  schemaVersion: number;
  agentId: string;
  spiffeIds: string[];
  entries: number;
  jwtAudience: string;
  unusedJoinToken: string;
  /** Made by the old server (federation create); absent in fixtures of versions, or of the script, before them. */
  federationRelationships?: Array<{ trustDomain: string; bundleEndpointUrl: string; profile: string }>;
}

export const FIXTURES = path.join(packageRoot, 'test/fixtures/upgrade');

/** Copies `from` into `to` as the daemons keep their data dirs: directories 0700, files 0600 (git keeps neither). */
function copyDataDir(from: string, to: string, mtime: Date): void {
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    const target = path.join(to, e.name);
    if (e.isDirectory()) copyDataDir(path.join(from, e.name), target, mtime);
    else fs.copyFileSync(path.join(from, e.name), target);
    fs.chmodSync(target, e.isDirectory() ? 0o700 : 0o600);
    // As the old version left them: the agent compares its state's age with its trust bundle's.
    fs.utimesSync(target, mtime, mtime);
  }
  fs.chmodSync(to, 0o700);
}

/** What the fixture's datastore held, read from a copy (opening the fixture's own file would leave -wal and -shm files). */
function oldDatastore(fixtureDir: string, scratch: string): { entries: Array<ReturnType<typeof comparableEntry>>; federatedBundles: Map<string, Buffer[]> } {
  const copy = path.join(scratch, 'old-datastore.sqlite3');
  fs.copyFileSync(path.join(fixtureDir, 'server-data', 'datastore.sqlite3'), copy);
  const db = new Database(copy, { readonly: true, fileMustExist: true });
  try {
    const entries = (db.prepare('SELECT id, spiffe_id, parent_id, selectors, dns_names, federates_with FROM registration_entries').all() as Array<Record<string, string>>).map((r) =>
      comparableEntry({
        id: r['id'], spiffe_id: r['spiffe_id'], parent_id: r['parent_id'], selectors: JSON.parse(r['selectors']!), dns_names: JSON.parse(r['dns_names']!), federates_with: JSON.parse(r['federates_with']!),
      }),
    );
    const bundles = db.prepare("SELECT trust_domain, x509_authorities FROM bundles WHERE trust_domain != 'example.org'").all() as Array<{ trust_domain: string; x509_authorities: string }>;
    return { entries, federatedBundles: new Map(bundles.map((b) => [b.trust_domain, (JSON.parse(b.x509_authorities) as string[]).map((d) => Buffer.from(d, 'base64'))])) };
  } finally {
    db.close();
  }
}

/** An entry by what decides who gets which SVID, in one order. */
function comparableEntry(e: { id?: string; spiffe_id?: string; parent_id?: string; selectors?: Array<{ type?: string; value?: string }>; dns_names?: string[]; federates_with?: string[] }) {
  return {
    id: e.id,
    spiffeId: e.spiffe_id,
    parentId: e.parent_id,
    selectors: (e.selectors ?? []).map((s) => `${s.type}:${s.value}`).sort(),
    dnsNames: e.dns_names ?? [],
    federatesWith: [...(e.federates_with ?? [])].sort(),
  };
}

const byId = (a: { id?: string | undefined }, b: { id?: string | undefined }): number => String(a.id).localeCompare(String(b.id));

function schemaVersion(dataDir: string): number {
  const db = new Database(path.join(dataDir, 'datastore.sqlite3'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v;
  } finally {
    db.close();
  }
}

/** The fixtures under test/fixtures/upgrade, by name (the commit that made each). */
export const fixtureNames = fs.existsSync(FIXTURES) ? fs.readdirSync(FIXTURES).filter((n) => fs.existsSync(path.join(FIXTURES, n, 'fixture.json'))).sort() : [];

let reportedVersion: Promise<string> | undefined;

/** What `meshid-agent --version` prints as its version: the same for every fixture, so asked once a file. */
function agentVersion(): Promise<string> {
  reportedVersion ??= runNode(AGENT_MAIN, ['--version']).then((r) => /^meshid-agent (\S+)\n$/.exec(r.out)![1]!);
  return reportedVersion;
}

export function upgradeTests(select: (schemaVersion: number) => boolean): void {
  let selected = 0;
  for (const name of fixtureNames) {
    const dir = path.join(FIXTURES, name);
    const fixture = JSON.parse(fs.readFileSync(path.join(dir, 'fixture.json'), 'utf8')) as Fixture;
    if (!select(fixture.schemaVersion)) continue;
    upgradeTest(name, dir, fixture);
    selected++;
  }
  // A file whose filter meets no fixture would pass with no test at all: the split must not lose fixtures silently.
  if (selected === 0) test('this upgrade file selects at least one fixture', () => assert.fail('no fixture in test/fixtures/upgrade matches this file\'s schema versions'));
}

function upgradeTest(name: string, dir: string, fixture: Fixture): void {
  const skip = libfaketimeSkip('upgrade') || (process.getuid!() !== fixture.uid ? `the fixture's entries select uid ${fixture.uid}` : false);

  test(`upgrade in place from ${name}: the current server keeps CA, entries, agents and tokens (after a kill -9 in its migrations), and the current agent serves its cache, then syncs`, { skip, timeout: 180_000 }, async (t) => {
    // 20 s after the fixture was made: the 5-minute JWT-SVID it served still has minutes to live.
    const madeAt = new Date(fixture.madeAt);
    const clock = tempDir('meshid-upgrade-clock-');
    teardown(t).after(clock.cleanup);
    const offsetFile = path.join(clock.dir, 'offset');
    const offsetSeconds = Math.round((madeAt.getTime() + 20_000 - Date.now()) / 1000);
    fs.writeFileSync(offsetFile, `${offsetSeconds >= 0 ? '+' : ''}${offsetSeconds}\n`);
    const env = fakeWallClock(offsetFile);
    const cluster = await startCluster(`meshid-upgrade-${name}-`, [], env, async (clusterDir) => {
      copyDataDir(path.join(dir, 'server-data'), path.join(clusterDir, 'server', 'data'), madeAt);
      copyDataDir(path.join(dir, 'agent-data'), path.join(clusterDir, 'agent-data'), madeAt);
      if (fixture.schemaVersion < LATEST_SCHEMA_VERSION) {
        const killed = await runServerKilledAt(path.join(clusterDir, 'server'), `migration:${LATEST_SCHEMA_VERSION}`, ['east'], env);
        assert.equal(killed.signal, 'SIGKILL', killed.output);
        assert.equal(schemaVersion(path.join(clusterDir, 'server', 'data')), fixture.schemaVersion, 'a migration killed before its commit leaves the old schema');
      }
    });
    teardown(t).after(() => cluster.cleanup());
    assert.equal(schemaVersion(path.join(cluster.dir, 'server', 'data')), LATEST_SCHEMA_VERSION, 'the start after the kill finished the upgrade');
    // The operator hears that the older version cannot take this data dir back (and nothing when nothing changed).
    const upgradeLines = cluster.server.output!().split('\n').filter((l) => l.includes('"datastore schema upgraded'));
    if (fixture.schemaVersion < LATEST_SCHEMA_VERSION) {
      assert.equal(upgradeLines.length, 1, cluster.server.output!());
      assert.deepEqual(
        (({ level, previousSchemaVersion, schemaVersion: to }) => ({ level, previousSchemaVersion, to }))(JSON.parse(upgradeLines[0]!) as Record<string, unknown>),
        { level: 30, previousSchemaVersion: fixture.schemaVersion, to: LATEST_SCHEMA_VERSION },
      );
      assert.match(upgradeLines[0]!, /restore a backup of the data dir taken before this start/);
    } else {
      assert.deepEqual(upgradeLines, [], 'no schema upgrade to report');
    }

    // The CA: the same roots, and what the old agent served still verifies under them.
    assert.equal(cluster.bundlePem, fs.readFileSync(path.join(dir, 'bundle.pem'), 'utf8'), 'the bundle is the one the old server published');
    const roots = pemToDerList(cluster.bundlePem);
    // What the old agent served, by SPIFFE ID: its order among identities created in one second was not kept then.
    const served = new Map(
      fixture.spiffeIds.map((_, i) => {
        const chain = pemToDerList(fs.readFileSync(path.join(dir, 'served', `svid.${i}.pem`), 'utf8'));
        return [parseCertificate(chain[0]!).uriSans[0]!, chain] as const;
      }),
    );
    assert.deepEqual([...served.keys()].sort(), [...fixture.spiffeIds].sort());
    for (const [leaf, ...intermediates] of served.values()) {
      const verified = opensslVerify({ roots, intermediates, leaf: leaf!, atTime: madeAt.getTime() });
      assert.ok(verified.ok, verified.output);
    }
    const entries = (await cluster.admin.call('Entries', 'ListEntries', {})).entries ?? [];
    assert.equal(entries.length, fixture.entries, 'every entry is kept');
    const old = oldDatastore(dir, clock.dir);
    assert.deepEqual(entries.map(comparableEntry).sort(byId), old.entries.sort(byId), 'each entry as it was: selectors, DNS names, federation');
    const relationships = (await cluster.admin.call('Federation', 'ListFederationRelationships', {})).relationships ?? [];
    assert.deepEqual(
      relationships.map((r) => ({ trustDomain: r.trust_domain, bundleEndpointUrl: r.bundle_endpoint_url, profile: r.bundle_endpoint_profile })),
      fixture.federationRelationships ?? [],
      'the federation relationships are kept',
    );
    // Federation: the federated bundles the old server held are served by the new one, byte for byte.
    assert.ok(old.federatedBundles.size > 0, 'the fixture holds a federated bundle');
    const federated = (await cluster.admin.call('Bundles', 'ListFederatedBundles', {})).bundles ?? [];
    assert.deepEqual(
      new Map(federated.map((b) => [b.trust_domain!, (b.x509_authorities ?? []).map((d) => Buffer.from(d))])),
      old.federatedBundles,
    );
    const agents = (await cluster.admin.call('Agents', 'ListAgents', {})).agents ?? [];
    assert.deepEqual(agents.map((a) => a.spiffe_id), [fixture.agentId], 'the attested agent is kept');
    // Agents report their version since schema version 8: one of an older version has reported none.
    if (fixture.schemaVersion < 8) assert.equal(agents[0]!.agent_version || undefined, undefined, 'an agent of the older version has reported no version');
    else {
      // Its commit as git abbreviated it in the checkout the fixture was built in: 7 hex digits in the fixtures so far,
      // 8 or more in one made from today's history (scripts/build-version.mjs, `git rev-parse --short`).
      const kept = /^0\.1\.0\+([0-9a-f]{7,})$/.exec(agents[0]!.agent_version ?? '');
      assert.ok(kept !== null && fixture.commit.startsWith(kept[1]!), `the version the older agent reported is kept: ${agents[0]!.agent_version}, commit ${fixture.commit}`);
    }

    // The agent, upgraded with the server down: its stored identity and cached SVIDs, no join token.
    const address = cluster.server.address();
    await cluster.server.stop();
    const agent = await cluster.startAgent({ serverAddress: address, env: env });
    const client = agent.client();
    teardown(t).after(() => client.close());
    const cached = (await client.fetchX509Svid()).svids;
    assert.deepEqual(cached.map((s) => s.spiffe_id).sort(), [...fixture.spiffeIds].sort(), 'the cached identities, at once');
    for (const svid of cached) {
      assert.ok(splitConcatenatedDer(Buffer.from(svid.x509_svid!))[0]!.equals(served.get(svid.spiffe_id!)![0]!), `${svid.spiffe_id}: the SVID served before the upgrade`);
    }
    // With the federated bundles the old agent served beside them (the db entry federates with partner.org).
    const cachedResponse = await client.fetchX509Svid();
    for (const [td, roots] of old.federatedBundles) {
      const servedFederated = cachedResponse.federated_bundles?.[`spiffe://${td}`];
      assert.ok(servedFederated !== undefined, `the cached federated bundle of ${td}`);
      assert.deepEqual(splitConcatenatedDer(Buffer.from(servedFederated)), roots);
    }
    const jwt = fs.readFileSync(path.join(dir, 'served', 'jwt-svid.txt'), 'utf8').trim();
    const validated = await client.validateJwtSvid(fixture.jwtAudience, jwt);
    assert.equal(validated.spiffeId, 'spiffe://example.org/web', 'a JWT-SVID issued before the upgrade validates');

    // The server back: a new entry reaches the upgraded agent.
    await startServerProcess(cluster, address);
    await cluster.createEntry({ spiffeId: 'spiffe://example.org/after-upgrade', selectors: [`unix:uid:${fixture.uid}`], parentId: Cluster.nodeAlias });
    // Looked for again as soon as the agent logs (its new SVID), at the latest every 100 ms; bounded, not timed.
    const until = Date.now() + 20_000;
    while (!(await agent.svidIds()).includes('spiffe://example.org/after-upgrade')) {
      if (Date.now() > until) assert.fail(`the entry created after the upgrade never reached the agent:\n${agent.output()}`);
      await nextOutputOr(agent.child, 100);
    }
    // Upgraded on its stored identity, it attested no more; its Sync told the server which version it runs now.
    assert.equal((await cluster.admin.call('Agents', 'GetAgent', { spiffe_id: fixture.agentId })).agent_version, await agentVersion());

    // A join token generated before the upgrade and not yet used attests a new agent.
    const second = await cluster.startAgent({ name: 'second', serverAddress: address, joinToken: fixture.unusedJoinToken, env: env });
    assert.ok((await second.svidIds()).includes('spiffe://example.org/after-upgrade'));
  });
}
