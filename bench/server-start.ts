/**
 * What a server start costs with many entries and agents: a data dir with START_ENTRIES entries (default 100,000,
 * spread over 2,000 parents) and START_AGENTS attested agents (default 2,000, a tenth of them in a datacenter the
 * config no longer serves, so the start's warning has something to count). Measured, START_RUNS times (default 5):
 * the server process's CPU time (user + system, /proc) from spawn until it logs "meshid-server is running", and, in
 * this process, the CPU time of the steps of a start that grow with the data: reading the entries, loading them into
 * the entry index, and the unserved-datacenter warning. Loopback only; not part of `npm run bench`:
 * `node dist/bench/server-start.js` after a build.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { systemClock } from '../src/common/clock.js';
import { parseSelector } from '../src/common/spiffe/selector.js';
import type { ServerConfig } from '../src/server/config.js';
import type { Logger } from '../src/common/log.js';
import { openSqliteDatastore } from '../src/server/datastore/sqlite-datastore.js';
import { EntryIndex } from '../src/server/entries/entry-index.js';
import { warnAboutAgentsOfUnservedDatacenters } from '../src/server/start-warnings.js';
import { SERVER_MAIN, startServerProcess } from '../test/support/server-process.js';
import { createManyEntries } from './many-entries.js';

const ENTRIES = Number(process.env['START_ENTRIES'] ?? 100_000);
const AGENTS = Number(process.env['START_AGENTS'] ?? 2_000);
const RUNS = Number(process.env['START_RUNS'] ?? 5);
const PARENTS = 2_000;
const DATACENTERS = ['--datacenter', 'east', '--datacenter', 'west'];

function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime + stime, in clock ticks of 1/100 s (Linux's USER_HZ).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const cpuMs = (fn: () => unknown): number => {
  const before = process.cpuUsage();
  fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
};

async function cpuMsAsync(fn: () => Promise<unknown>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

async function fill(dataDir: string): Promise<void> {
  const ds = await openSqliteDatastore({ file: path.join(dataDir, 'datastore.sqlite3'), clock: systemClock });
  try {
    await createManyEntries(ds, ENTRIES, PARENTS);
    const now = Date.now();
    for (let i = 0; i < AGENTS; i++) {
      const datacenter = i % 10 === 0 ? 'gone' : 'east';
      await ds.createAgent({
        spiffeId: `spiffe://example.org/meshid/agent/${datacenter}/a${i}`,
        datacenter,
        selectors: [parseSelector(`meshid:datacenter:${datacenter}`)],
        certSerial: i.toString(16).padStart(16, '0'),
        certNotAfter: now + 86_400_000,
        attestedAt: now,
        updatedAt: now,
        banned: false,
      });
    }
  } finally {
    await ds.close();
  }
}

/** One start: the server's CPU seconds until it logs that it is running, then a clean stop. */
async function timedStart(dir: string): Promise<number> {
  const child = spawn(
    process.execPath,
    [SERVER_MAIN, 'run', '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'data'), '--bind-address', '127.0.0.1:0', '--admin-socket', path.join(dir, 'admin', 'admin.sock'), ...DATACENTERS],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHID_LOG_LEVEL: 'info' } },
  );
  let output = '';
  const cpu = await new Promise<number>((resolve, reject) => {
    const look = (d: Buffer): void => {
      output += d.toString();
      if (output.includes('meshid-server is running')) resolve(cpuSeconds(child.pid!));
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code) => reject(new Error(`meshid-server exited with ${code}:\n${output}`)));
  });
  await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  return cpu;
}

const quiet = { warn: () => undefined } as unknown as Logger;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-bench-start-'));
try {
  // A first start makes the CA and the schema; the entries and agents are written behind its back, as a long-lived
  // server's data dir would hold them.
  await (await startServerProcess(dir, DATACENTERS)).stop();
  await fill(path.join(dir, 'data'));
  // The warning reads only the served datacenters of the config.
  const config = { datacenters: ['east', 'west'] } as unknown as ServerConfig;
  const steps: Record<string, number[]> = { 'server CPU to running': [], listAllEntries: [], 'EntryIndex.load': [], 'unserved-datacenter warning': [] };
  for (let run = 0; run < RUNS; run++) {
    steps['server CPU to running']!.push((await timedStart(dir)) * 1000);
    const ds = await openSqliteDatastore({ file: path.join(dir, 'data', 'datastore.sqlite3'), clock: systemClock });
    try {
      let entries: Awaited<ReturnType<typeof ds.listAllEntries>> = [];
      steps['listAllEntries']!.push(await cpuMsAsync(async () => (entries = await ds.listAllEntries())));
      steps['EntryIndex.load']!.push(cpuMs(() => new EntryIndex().load(entries, 1)));
      steps['unserved-datacenter warning']!.push(await cpuMsAsync(() => warnAboutAgentsOfUnservedDatacenters(ds, config, Date.now(), quiet)));
    } finally {
      await ds.close();
    }
  }
  process.stdout.write(`server start, ${ENTRIES} entries, ${AGENTS} agents, ${RUNS} runs (CPU ms: median, then each run)\n`);
  for (const [name, xs] of Object.entries(steps)) process.stdout.write(`  ${name.padEnd(28)} ${median(xs).toFixed(0).padStart(6)}   [${xs.map((x) => x.toFixed(0)).join(', ')}]\n`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
