/**
 * The in-process server's periodic housekeeping, driven by an injected clock instead of waiting for the minute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { compileServerConfig } from '../../src/server/config.js';
import type { RegistrationEntry } from '../../src/server/datastore/datastore.js';
import { ENTRY_TOMBSTONE_RETENTION_MS, MeshidServer } from '../../src/server/server.js';
import { tempDir } from '../support/server-kit.js';

const H = 3_600_000;

function newEntry(name: string) {
  return {
    spiffeId: `spiffe://example.org/${name}`, parentId: 'spiffe://example.org/meshid/agent/east/a1', selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, dnsNames: [], hint: '', federatesWith: [], admin: false, downstream: false,
  };
}

/** An in-process server in a temp dir on a fake clock at 2026-01-01. */
async function startServer(): Promise<{ server: MeshidServer; clock: FakeClock; dataDir: string; cleanup: () => void }> {
  const { dir, cleanup } = tempDir('meshid-housekeeping-');
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const dataDir = path.join(dir, 'data');
  const config = compileServerConfig({
    trust_domain: 'example.org', datacenters: ['east'], data_dir: dataDir, bind_address: '127.0.0.1:0',
    admin_socket: path.join(dir, 'admin', 'admin.sock'),
  });
  return { server: await MeshidServer.start({ config, log: silentLogger(), clock }), clock, dataDir, cleanup };
}

test('housekeeping prunes entry tombstones older than the retention on the injected clock and keeps the newer ones', async () => {
  const { server, clock, dataDir, cleanup } = await startServer();
  try {
    const [old, recent, kept] = (await server.ds.createEntries(['old', 'recent', 'kept'].map(newEntry))).map((r) => r.entry!) as RegistrationEntry[];
    await server.ds.deleteEntries([old!.id]);
    clock.advance(2 * H);
    await server.ds.deleteEntries([recent!.id]);
    clock.advance(ENTRY_TOMBSTONE_RETENTION_MS - H); // old was deleted an hour longer ago than the retention, recent an hour less
    await server.housekeeping(clock);

    const db = new Database(path.join(dataDir, 'datastore.sqlite3'), { readonly: true });
    try {
      assert.deepEqual(db.prepare('SELECT entry_id FROM entry_tombstones').all(), [{ entry_id: recent!.id }]);
    } finally {
      db.close();
    }
    // The hub, which heard of every deletion, is unaffected: it holds exactly the live entry.
    await server.hub.settled();
    assert.equal(server.hub.index.size, 1);
    assert.deepEqual(server.hub.index.get(kept!.id), kept);
  } finally {
    await server.stop();
    cleanup();
  }
});

test('a failing housekeeping step (agent pruning, stubbed to throw: a datastore fault cannot be induced) does not skip the steps after it', async () => {
  const { server, clock, dataDir, cleanup } = await startServer();
  try {
    await server.ds.createJoinToken({ token: 'expiring-token', datacenter: 'east', selectors: [], expiresAt: clock.now() + H, createdAt: clock.now() });
    const [gone] = (await server.ds.createEntries([newEntry('gone')])).map((r) => r.entry!) as RegistrationEntry[];
    await server.ds.deleteEntries([gone!.id]);
    clock.advance(ENTRY_TOMBSTONE_RETENTION_MS + H);
    let failed = 0;
    server.ds.pruneAgents = async () => {
      failed++;
      throw new Error('database is locked');
    };
    await server.housekeeping(clock);
    // (The scheduled run the advance set off may have met it too.)
    assert.ok(failed > 0, 'the failing step ran: the steps around it ran past a failure, not past nothing');

    const db = new Database(path.join(dataDir, 'datastore.sqlite3'), { readonly: true });
    try {
      assert.deepEqual(db.prepare('SELECT entry_id FROM entry_tombstones').all(), [], 'the step after the failing one ran');
      assert.deepEqual(db.prepare('SELECT token_hash FROM join_tokens').all(), [], 'the step before it ran');
    } finally {
      db.close();
    }
  } finally {
    await server.stop();
    cleanup();
  }
});

/**
 * Records each housekeeping run's start on the injected clock; `finish()` lets the run in progress end, `ended()`
 * resolves once it has and the schedule has taken that in (its promise callbacks, all run before the next macrotask).
 */
function recordRuns(server: MeshidServer, clock: FakeClock): { starts: number[]; finish: () => void; ended: () => Promise<void> } {
  const starts: number[] = [];
  let release: () => void = () => undefined;
  let ended: Promise<void> = Promise.resolve();
  const run = server.housekeeping.bind(server);
  server.housekeeping = (c) => {
    starts.push(clock.now());
    const held = new Promise<void>((resolve) => (release = resolve));
    ended = held.then(() => run(c));
    return ended;
  };
  return { starts, finish: () => release(), ended: () => ended.then(() => new Promise<void>((resolve) => setImmediate(resolve))) };
}

test('housekeeping runs once a minute of the injected clock (not of the wall clock, as node-cron did)', async () => {
  const { server, clock, cleanup } = await startServer();
  try {
    const started = clock.now();
    const runs = recordRuns(server, clock);
    clock.advance(59_999);
    assert.deepEqual(runs.starts, [], 'not before a minute has passed');
    clock.advance(1);
    assert.deepEqual(runs.starts, [started + 60_000]);
    runs.finish();
    await runs.ended();
    clock.advance(60_000);
    assert.deepEqual(runs.starts, [started + 60_000, started + 120_000]);
    runs.finish();
  } finally {
    await server.stop();
    cleanup();
  }
});

test('a housekeeping run that outlasts the minute is not overlapped: the next starts a minute after it ends', async () => {
  const { server, clock, cleanup } = await startServer();
  try {
    const started = clock.now();
    const runs = recordRuns(server, clock);
    clock.advance(60_000);
    clock.advance(5 * 60_000);
    assert.deepEqual(runs.starts, [started + 60_000], 'one run while the first has not ended');
    runs.finish();
    await runs.ended();
    clock.advance(60_000);
    assert.deepEqual(runs.starts, [started + 60_000, started + 7 * 60_000]);
    runs.finish();
  } finally {
    await server.stop();
    cleanup();
  }
});

test('an expired join token is pruned by the scheduled housekeeping a minute after it expired, on the injected clock', async () => {
  const { server, clock, dataDir, cleanup } = await startServer();
  try {
    await server.ds.createJoinToken({ token: 'short-lived', datacenter: 'east', selectors: [], expiresAt: clock.now() + 1000, createdAt: clock.now() });
    const runs = recordRuns(server, clock);
    clock.advance(60_000);
    runs.finish();
    await runs.ended();
    const db = new Database(path.join(dataDir, 'datastore.sqlite3'), { readonly: true });
    try {
      assert.deepEqual(db.prepare('SELECT token_hash FROM join_tokens').all(), []);
    } finally {
      db.close();
    }
  } finally {
    await server.stop();
    cleanup();
  }
});
