import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger, type Logger } from '../../src/common/log.js';
import { compileServerConfig, type RawServerConfig, type ServerConfig } from '../../src/server/config.js';
import { openSqliteDatastore } from '../../src/server/datastore/sqlite-datastore.js';
import type { Datastore } from '../../src/server/datastore/datastore.js';
import { KeyStore } from '../../src/server/ca/key-store.js';
import { loadUpstreamCa } from '../../src/server/ca/upstream-ca.js';
import { CaManager } from '../../src/server/ca/ca-manager.js';
import { caSettingsFrom } from '../../src/server/ca/ca-settings.js';

/** A temp dir removed by the returned cleanup. */
export function tempDir(prefix = 'meshid-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A CA manager on a real SQLite datastore and key store in `dataDir`, driven by a FakeClock. */
export async function openTestCa(
  dataDir: string,
  raw: RawServerConfig = {},
  clock = new FakeClock(Date.UTC(2026, 0, 1)),
  log: Logger = silentLogger(),
): Promise<{ ca: CaManager; ds: Datastore; clock: FakeClock; keys: KeyStore; config: ServerConfig; close: () => Promise<void> }> {
  const config = compileServerConfig({ trust_domain: 'example.org', datacenters: ['east', 'west'], data_dir: dataDir, ...raw });
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const ds = await openSqliteDatastore({ file: path.join(dataDir, 'datastore.sqlite3'), clock });
  try {
    const keys = new KeyStore(dataDir);
    const upstream = config.upstreamCa === undefined ? undefined : loadUpstreamCa(config.upstreamCa);
    const ca = await CaManager.open(caSettingsFrom(config, upstream), ds, keys, clock, log);
    return { ca, ds, clock, keys, config, close: async () => { await ca.stop(); await ds.close(); } };
  } catch (err) {
    await ds.close();
    throw err;
  }
}
