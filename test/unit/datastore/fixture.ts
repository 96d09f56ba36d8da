import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeClock } from '../../../src/common/clock.js';
import { parseSelector } from '../../../src/common/spiffe/selector.js';
import type { NewEntry, Selector } from '../../../src/server/datastore/datastore.js';
import { openSqliteDatastore, type SqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';

export interface DatastoreFixture {
  ds: SqliteDatastore;
  dir: string;
  file: string;
  clock: FakeClock;
}

/** A fresh datastore in its own temp dir, closed and removed afterwards whatever the test does. */
export async function withDatastore(fn: (t: DatastoreFixture) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-ds-'));
  const file = path.join(dir, 'datastore.sqlite3');
  const clock = new FakeClock();
  const ds = await openSqliteDatastore({ file, clock });
  try {
    await fn({ ds, dir, file, clock });
  } finally {
    await ds.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-ds-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Selectors from their command-line form: sels('unix:uid:1000', 'unix:gid:0'). */
export function sels(...forms: string[]): Selector[] {
  return forms.map(parseSelector);
}

export function entry(overrides: Partial<NewEntry> = {}): NewEntry {
  return {
    spiffeId: 'spiffe://example.org/web',
    parentId: 'spiffe://example.org/meshid/agent/dc1/a1',
    selectors: sels('unix:uid:1000'),
    x509SvidTtlSeconds: 3600,
    jwtSvidTtlSeconds: 300,
    dnsNames: [],
    hint: '',
    federatesWith: [],
    admin: false,
    downstream: false,
    ...overrides,
  };
}
