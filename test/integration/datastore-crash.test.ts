import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { systemClock } from '../../src/common/clock.js';
import { openSqliteDatastore } from '../../src/server/datastore/sqlite-datastore.js';
import { exitedAndRead } from '../support/exited-and-read.js';

/**
 * kill -9 at random moments while a child process writes 1,000-entry batches (and deletes whole earlier batches):
 * after every kill the database must pass PRAGMA integrity_check and every batch must be entirely present or entirely
 * absent, with its index rows. Batches the child reported as committed must survive.
 */

const BATCH = 1000;
const KILLS = 6;
const DATASTORE_JS = new URL('../../src/server/datastore/sqlite-datastore.js', import.meta.url);

// The writer: creates batch after batch; every third batch it deletes the batch before last, in one call.
const WRITER = `
import { openSqliteDatastore } from ${JSON.stringify(DATASTORE_JS.href)};
const [file, run] = process.argv.slice(2);
const ds = await openSqliteDatastore({ file, clock: { now: () => Date.now(), setTimer: () => ({ cancel() {} }) } });
process.stdout.write('ready\\n');
const made = [];
for (let b = 0; ; b++) {
  const tag = 'r' + run + 'b' + b;
  const entries = [];
  for (let i = 0; i < ${BATCH}; i++) {
    entries.push({
      spiffeId: 'spiffe://example.org/' + tag + '/w' + i, parentId: 'spiffe://example.org/meshid/agent/dc1/p' + (i % 10),
      selectors: [{ type: 'unix', value: 'uid:' + i }, { type: 'batch', value: tag }], x509SvidTtlSeconds: 3600,
      jwtSvidTtlSeconds: 300, dnsNames: ['w' + i + '.example.org'], hint: tag, federatesWith: ['partner.org'],
      admin: false, downstream: false,
    });
  }
  const results = await ds.createEntries(entries);
  const failed = results.find((r) => r.error);
  if (failed) { process.stderr.write('create failed: ' + failed.error.message + '\\n'); process.exit(2); }
  made.push(results.map((r) => r.entry.id));
  process.stdout.write('committed ' + tag + '\\n');
  if (b % 3 === 2) {
    const victim = 'r' + run + 'b' + (b - 2);
    const deleted = await ds.deleteEntries(made[b - 2]);
    if (deleted.some((r) => r.error)) { process.stderr.write('delete failed\\n'); process.exit(2); }
    process.stdout.write('deleted ' + victim + '\\n');
  }
}
`;

interface RunLog {
  committed: Set<string>;
  deleted: Set<string>;
}

function startWriter(
  script: string,
  file: string,
  run: number,
): { child: ChildProcess; log: RunLog; ready: Promise<void>; committed: Promise<void>; exited: Promise<void>; stderr: () => string } {
  const child = spawn(process.execPath, [script, file, String(run)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: RunLog = { committed: new Set(), deleted: new Set() };
  let err = '';
  let buffered = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  let onCommitted: () => void = () => {};
  const committed = new Promise<void>((resolve) => (onCommitted = resolve));
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      if (line === 'ready') onReady();
      const [what, tag] = line.split(' ');
      if (what === 'committed') {
        log.committed.add(tag!);
        onCommitted();
      }
      if (what === 'deleted') log.deleted.add(tag!);
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = exitedAndRead(child).then(() => undefined);
  return { child, log, ready, committed, exited, stderr: () => err };
}

/** Opens the crashed file as SQLite itself would (recovering the WAL) and checks every invariant. */
function verify(file: string, logs: RunLog[]): { present: number; absent: number } {
  const db = new Database(file);
  try {
    assert.deepEqual(db.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    const count = (sql: string): Map<string, number> =>
      new Map((db.prepare(sql).all() as Array<{ tag: string; n: number }>).map((r) => [r.tag, r.n]));
    const entries = count('SELECT hint AS tag, COUNT(*) AS n FROM registration_entries GROUP BY hint');
    const selectors = count("SELECT value AS tag, COUNT(*) AS n FROM entry_selectors WHERE type = 'batch' GROUP BY value");
    const revisions = count('SELECT hint AS tag, COUNT(DISTINCT revision) AS n FROM registration_entries GROUP BY hint');
    const allSelectors = (db.prepare('SELECT COUNT(*) AS n FROM entry_selectors').get() as { n: number }).n;
    const federated = (db.prepare('SELECT COUNT(*) AS n FROM entry_federates_with').get() as { n: number }).n;
    let present = 0;
    for (const [tag, n] of entries) {
      assert.equal(n, BATCH, `batch ${tag} is complete (found ${n} of ${BATCH} entries)`);
      assert.equal(selectors.get(tag), BATCH, `batch ${tag} has all its selector index rows`);
      assert.equal(revisions.get(tag), 1, `batch ${tag} was committed under one revision`);
      present++;
    }
    assert.equal(allSelectors, present * BATCH * 2, 'no orphaned or missing selector rows');
    assert.equal(federated, present * BATCH, 'no orphaned or missing federates_with rows');
    const revision = (db.prepare("SELECT value FROM revisions WHERE name = 'changes'").get() as { value: number }).value;
    const maxEntryRevision = (db.prepare('SELECT MAX(revision) AS m FROM registration_entries').get() as { m: number | null }).m ?? 0;
    assert.ok(revision >= maxEntryRevision, `revision counter ${revision} is not behind the entries (${maxEntryRevision})`);
    for (const log of logs) {
      for (const tag of log.committed) {
        // Batch b is deleted right after batch b+2 commits (b % 3 === 0): once b+2 exists, the kill may have landed
        // after that deletion committed but before the writer reported it.
        const [, run, b] = /^r(\d+)b(\d+)$/.exec(tag)!.map(Number) as [number, number, number];
        const successor = `r${run}b${b + 2}`;
        const mayBeDeleted = b % 3 === 0 && (log.committed.has(successor) || entries.has(successor));
        if (!log.deleted.has(tag) && !mayBeDeleted) assert.equal(entries.get(tag), BATCH, `batch ${tag} was reported committed and is kept`);
      }
      for (const tag of log.deleted) {
        assert.equal(entries.get(tag), undefined, `batch ${tag} was reported deleted and is gone`);
      }
    }
    const tombstones = (db.prepare('SELECT COUNT(*) AS n FROM entry_tombstones').get() as { n: number }).n;
    assert.equal(tombstones % BATCH, 0, 'deletions are tombstoned whole batches at a time');
    return { present, absent: tombstones / BATCH };
  } finally {
    db.close();
  }
}

test('kill -9 during batched writes never leaves a partial batch or a damaged database', { timeout: 120_000 }, async () => {
  assert.ok(fs.existsSync(fileURLToPath(DATASTORE_JS)), `build first: ${fileURLToPath(DATASTORE_JS)} is missing`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-ds-crash-'));
  const file = path.join(dir, 'datastore.sqlite3');
  const script = path.join(dir, 'writer.mjs');
  fs.writeFileSync(script, WRITER);
  const logs: RunLog[] = [];
  let running: ChildProcess | undefined;
  try {
    for (let run = 0; run < KILLS; run++) {
      const w = startWriter(script, file, run);
      running = w.child;
      await Promise.race([
        w.ready,
        w.exited.then(() => assert.fail(`writer exited before it was ready: ${w.stderr()}`)),
      ]);
      // On a loaded machine every kill so far may have come before the first commit: the last one waits for a commit,
      // so the kept-batch checks have something to check.
      if (run === KILLS - 1 && logs.every((l) => l.committed.size === 0)) {
        await Promise.race([w.committed, w.exited.then(() => assert.fail(`writer exited before a commit: ${w.stderr()}`))]);
      }
      // Somewhere within the first few batches: mostly mid-transaction, sometimes between two.
      await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 600)));
      assert.equal(w.child.exitCode, null, `writer died on its own: ${w.stderr()}`);
      w.child.kill('SIGKILL');
      await w.exited;
      running = undefined;
      logs.push(w.log);
      const { present } = verify(file, logs);
      // The meshid code reopens it too (migrations are a no-op) and sees the same entries.
      const ds = await openSqliteDatastore({ file, clock: systemClock });
      try {
        assert.equal(await ds.countEntries(), present * BATCH);
        const changes = await ds.listEntryChangesSince(0);
        assert.ok(!changes.reset, 'nothing was pruned, so the feed answers with a delta');
        assert.equal(changes.upserts.length, present * BATCH);
      } finally {
        await ds.close();
      }
    }
    const total = logs.reduce((n, l) => n + l.committed.size, 0);
    assert.ok(total > 0, 'the writer committed at least one batch over all runs (otherwise nothing was tested)');
  } finally {
    running?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
