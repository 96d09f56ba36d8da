/**
 * Upgrades from every schema version that ever existed. Released migrations are only appended, never edited (git log
 * -p src/server/datastore/migrations.ts shows each version's statements unchanged since it was added), so applying the
 * first v of them builds exactly the schema that version's server left. Each is filled with what that version could
 * hold — copied, column by column, from a datastore the current code wrote — and opened by the current code, which
 * must serve all of it: entries (and the deletions in the change feed), join tokens (the unused one consumable once,
 * the used one not), agents, bundles, federation relationships, the CA journal, revoked roots and revoked JWT keys.
 * integration/upgrade.test.ts starts real daemons on data dirs older builds left, one per schema version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FakeClock } from '../../../src/common/clock.js';
import type { AttestedAgent, CaRecord, RevokedRootRecord, StoredBundle, StoredRelationship } from '../../../src/server/datastore/datastore.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_DDL } from '../../../src/server/datastore/migrations.js';
import { openSqliteDatastore, type SqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { entry, sels, tempDir } from './fixture.js';

const T0 = Date.UTC(2026, 10, 28);
const UNUSED_TOKEN = 'unused-join-token-0123456789abcdef';
const USED_TOKEN = 'used-join-token-0123456789abcdef';
const AGENT = 'spiffe://example.org/meshid/agent/east/a1';
const BANNED = 'spiffe://example.org/meshid/agent/east/b2';

/** A tiny DER SEQUENCE: the datastore keeps certificates as bytes and splits concatenations by their headers only. */
const der = (b: number): Buffer => Buffer.from([0x30, 0x01, b]);

const partnerBundle: StoredBundle = {
  trustDomain: 'partner.org',
  x509Authorities: [der(7)],
  jwtAuthorities: [{ kid: 'pk1', publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', notAfter: T0 + 1e9 }],
  sequence: 3,
  updatedAt: T0,
};
const ownBundle: StoredBundle = { trustDomain: 'example.org', x509Authorities: [der(1)], jwtAuthorities: [], sequence: 2, updatedAt: T0 };
const relationship: StoredRelationship = {
  trustDomain: 'partner.org',
  bundleEndpointUrl: 'https://partner.example:8443/bundle',
  profile: 'https_spiffe',
  endpointSpiffeId: 'spiffe://partner.org/bundle-server',
  createdAt: T0,
  updatedAt: T0,
};
const caRecord = (id: string, kind: CaRecord['kind'], overrides: Partial<CaRecord> = {}): CaRecord => ({
  id,
  kind,
  datacenter: kind === 'intermediate' ? 'east' : '',
  state: 'active',
  certDer: der(id.length),
  keyId: `${id}-key`,
  notBefore: T0,
  notAfter: T0 + 1e9,
  createdAt: T0,
  updatedAt: T0,
  ...overrides,
});
const revoked: RevokedRootRecord = { id: 'root-old', subject: 'O=meshid, CN=old root', certFingerprint: 'ab'.repeat(32), subjectKeyId: 'cd'.repeat(20), anchorsDer: [der(9)], revokedAt: T0 };

/** What every version's datastore holds, written by the current code (the schema's latest version). */
async function fillLatest(ds: SqliteDatastore): Promise<void> {
  await ds.setBundle(partnerBundle);
  await ds.createFederationRelationship(relationship);
  await ds.commitCaChange(
    { add: [caRecord('root-1', 'root', { fromUpstreamCa: false }), caRecord('int-east-1', 'intermediate'), caRecord('jwt-1', 'jwt', { certDer: undefined, publicKeyPem: 'PEM' })] },
    ownBundle,
  );
  await ds.commitCaChange({ add: [caRecord('root-old', 'root', { state: 'old' })] }, ownBundle);
  await ds.commitCaChange({ remove: ['root-old'], revoked: [revoked] }, ownBundle);
  await ds.commitCaChange({ add: [caRecord('jwt-old', 'jwt', { state: 'tainted', certDer: undefined, publicKeyPem: 'PEM' })] }, ownBundle);
  await ds.commitCaChange({ remove: ['jwt-old'], revokedJwtKeys: [{ id: 'jwt-old', keyId: 'jwt-old-key', revokedAt: T0 }] }, ownBundle);
  await ds.createEntries([
    entry({ spiffeId: 'spiffe://example.org/node/east', parentId: 'spiffe://example.org/meshid/server', selectors: sels('meshid:datacenter:east') }),
    entry({ spiffeId: 'spiffe://example.org/web', parentId: 'spiffe://example.org/node/east', dnsNames: ['web.example.org'], hint: 'web' }),
    entry({ spiffeId: 'spiffe://example.org/db', parentId: 'spiffe://example.org/node/east', federatesWith: ['partner.org'], selectors: sels('unix:uid:1000', 'unix:gid:50') }),
    entry({ spiffeId: 'spiffe://example.org/gone', parentId: 'spiffe://example.org/node/east' }),
  ]);
  const gone = (await ds.listAllEntries()).find((e) => e.spiffeId === 'spiffe://example.org/gone')!;
  await ds.deleteEntries([gone.id]);
  for (const token of [UNUSED_TOKEN, USED_TOKEN]) {
    await ds.createJoinToken({ token, datacenter: 'east', selectors: sels('meshid:datacenter:east'), expiresAt: T0 + 3_600_000, createdAt: T0 });
  }
  const agent: AttestedAgent = {
    spiffeId: AGENT, datacenter: 'east', selectors: sels('meshid:datacenter:east'), certSerial: '0b', certNotAfter: T0 + 1e8,
    attestedAt: T0, updatedAt: T0, banned: false, certIssuerId: 'int-east-1', agentVersion: '0.1.0+6ebd53b',
  };
  await ds.createAgent(agent, { joinToken: USED_TOKEN });
  await ds.updateAgentCert(AGENT, '0c', T0 + 2e8, '0b', 'int-east-1');
  await ds.setAgentVersion(AGENT, '0.1.0+6ebd53b');
  await ds.createAgent({ ...agent, spiffeId: BANNED, certSerial: '0d', certIssuerId: undefined, agentVersion: undefined });
  await ds.banAgent(BANNED);
}

/** Everything the datastore serves, as the server reads it. */
async function contents(ds: SqliteDatastore) {
  return {
    revision: await ds.currentRevision(),
    entries: await ds.listAllEntries(),
    byParent: (await ds.listEntriesByParentIds(['spiffe://example.org/node/east'])).map((e) => e.spiffeId).sort(),
    changes: await ds.listEntryChangesSince(0),
    agents: await ds.listAgents(),
    bundles: await ds.listBundles(),
    relationships: await ds.listFederationRelationships(),
    ca: await ds.listCaRecords(),
    revokedRoots: await ds.listRevokedRoots(),
    revokedJwtKeys: await ds.listRevokedJwtKeys(),
  };
}
type Contents = Awaited<ReturnType<typeof contents>>;

/** What a datastore of `version` that held `latest` serves after the upgrade: what later versions added is not there. */
function expectedAfterUpgrade(latest: Contents, version: number): Contents {
  const strip = <T extends object>(o: T, key: keyof T, since: number): T => {
    if (version >= since) return o;
    const { [key]: _gone, ...rest } = o;
    return rest as T;
  };
  return {
    ...latest,
    agents: latest.agents.map((a) => strip(strip(a, 'certIssuerId', 5), 'agentVersion', 8)),
    relationships: version >= 4 ? latest.relationships : [],
    ca: latest.ca.map((r) => strip(r, 'fromUpstreamCa', 6)),
    revokedRoots: version >= 7 ? latest.revokedRoots : [],
    revokedJwtKeys: version >= 9 ? latest.revokedJwtKeys : [],
  };
}

/** The database a server of schema `version` left holding what `from` holds: its tables and columns only. */
function buildOldDatastore(file: string, version: number, from: string): void {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.exec(SCHEMA_MIGRATIONS_DDL);
    for (const m of MIGRATIONS.filter((x) => x.version <= version)) {
      for (const statement of m.statements) db.exec(statement);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, T0);
    }
    db.prepare('ATTACH DATABASE ? AS latest').run(from);
    const tables = (db.prepare("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT IN ('schema_migrations', 'datastore_info')").all() as Array<{ name: string }>).map((r) => r.name);
    for (const table of tables) {
      const columns = (db.prepare(`SELECT name FROM pragma_table_info(?, 'main')`).all(table) as Array<{ name: string }>).map((r) => r.name).join(', ');
      // The counters a migration seeded are overwritten with the latest values (their names are the primary key).
      db.exec(`INSERT OR REPLACE INTO main.${table} (${columns}) SELECT ${columns} FROM latest.${table}${table === 'revisions' && version < 2 ? " WHERE name = 'changes'" : ''}`);
    }
    db.exec('DETACH DATABASE latest');
  } finally {
    db.close();
  }
}

/** A datastore of the current schema at `file`, filled by fillLatest, and what it serves. */
async function filledLatest(file: string): Promise<Contents> {
  const ds = await openSqliteDatastore({ file, clock: new FakeClock(T0) });
  try {
    await fillLatest(ds);
    return await contents(ds);
  } finally {
    await ds.close();
  }
}

test('a datastore of every earlier schema version is upgraded with everything it held still served', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const latestFile = path.join(dir, 'latest.sqlite3');
    const latest = await filledLatest(latestFile);
    // The fill covers what each table can hold, so a column or table lost in an upgrade shows.
    assert.equal(latest.entries.length, 3);
    assert.deepEqual('deletedIds' in latest.changes ? latest.changes.deletedIds.length : 'reset', 1);
    assert.equal(latest.agents.length, 2);
    assert.ok(latest.agents.some((a) => a.certIssuerId !== undefined && a.agentVersion !== undefined && a.previousCertSerial !== undefined));
    assert.ok(latest.ca.some((r) => r.fromUpstreamCa === false));
    assert.equal(latest.relationships.length, 1);
    assert.equal(latest.revokedRoots.length, 1);
    assert.equal(latest.revokedJwtKeys.length, 1);

    for (let version = 1; version < LATEST_SCHEMA_VERSION; version++) {
      const file = path.join(dir, `v${version}.sqlite3`);
      buildOldDatastore(file, version, latestFile);
      const upgrades: Array<{ from: number; to: number }> = [];
      const clock = new FakeClock(T0 + 60_000);
      const ds = await openSqliteDatastore({ file, clock, onSchemaUpgrade: (u) => upgrades.push(u) });
      try {
        assert.deepEqual(upgrades, [{ from: version, to: LATEST_SCHEMA_VERSION }], `v${version}`);
        assert.deepEqual(await contents(ds), expectedAfterUpgrade(latest, version), `v${version}: what it held is served as before`);
        // Join tokens as before: the unused one attests once, the used one never.
        assert.equal(await ds.consumeJoinToken(USED_TOKEN), undefined, `v${version}: a used token stays used`);
        assert.equal((await ds.consumeJoinToken(UNUSED_TOKEN))?.datacenter, 'east', `v${version}: an unused token is still valid`);
        assert.equal(await ds.consumeJoinToken(UNUSED_TOKEN), undefined, `v${version}: and is used once`);
        // Usable as the current version uses it: writes to what the later migrations added.
        await ds.setAgentVersion(AGENT, '0.2.0');
        await ds.updateAgentCert(AGENT, '0e', T0 + 3e8, '0c', 'int-east-1');
        assert.deepEqual(
          (({ certIssuerId, agentVersion }) => ({ certIssuerId, agentVersion }))((await ds.getAgent(AGENT))!),
          { certIssuerId: 'int-east-1', agentVersion: '0.2.0' },
          `v${version}`,
        );
        await ds.createFederationRelationship({ ...relationship, trustDomain: 'third.org' });
        const [created] = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/new', parentId: 'spiffe://example.org/node/east' })]);
        assert.equal(created?.entry?.revision, latest.revision + 1, `v${version}: the change feed goes on from its revision`);
      } finally {
        await ds.close();
      }
    }
  } finally {
    cleanup();
  }
});

test('a migration that throws halfway (test hook on its statement) leaves the datastore at its old version with its data, and the next open upgrades it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const latestFile = path.join(dir, 'latest.sqlite3');
    const latest = await filledLatest(latestFile);
    const file = path.join(dir, 'v4.sqlite3');
    buildOldDatastore(file, 4, latestFile);
    const schema = (): { version: number; agentColumns: string[]; revokedRootsTable: boolean } => {
      const db = new Database(file, { readonly: true });
      try {
        return {
          version: (db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v,
          agentColumns: (db.prepare("SELECT name FROM pragma_table_info('attested_agents')").all() as Array<{ name: string }>).map((r) => r.name),
          revokedRootsTable: db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'revoked_roots'").get() !== undefined,
        };
      } finally {
        db.close();
      }
    };
    const before = schema();
    // Migrations 5 and 6 have run in this start when 7 fails: the throw comes from inside the one transaction.
    const failing = MIGRATIONS.find((m) => m.version === 7)!.statements[0]!;
    const exec = Database.prototype.exec;
    Database.prototype.exec = function (this: Database.Database, source: string): Database.Database {
      if (source === failing) throw new Error('injected failure');
      return exec.call(this, source);
    };
    try {
      await assert.rejects(openSqliteDatastore({ file, clock: new FakeClock(T0) }), (err: Error) => {
        assert.equal(err.message, `cannot upgrade the datastore ${file} from schema version 4 to ${LATEST_SCHEMA_VERSION}: migration 7 (revoked roots) failed: ` +
          'injected failure. Nothing was changed: it is still at version 4, and the next start tries again');
        return true;
      });
    } finally {
      Database.prototype.exec = exec;
    }
    assert.deepEqual(schema(), before, 'neither migration 5 nor 6 was kept');
    assert.equal(before.version, 4);
    const upgrades: Array<{ from: number; to: number }> = [];
    const ds = await openSqliteDatastore({ file, clock: new FakeClock(T0), onSchemaUpgrade: (u) => upgrades.push(u) });
    try {
      assert.deepEqual(upgrades, [{ from: 4, to: LATEST_SCHEMA_VERSION }]);
      assert.deepEqual(await contents(ds), expectedAfterUpgrade(latest, 4));
    } finally {
      await ds.close();
    }
  } finally {
    cleanup();
  }
});
