/**
 * `npm run bench [-- P1 P3 W ...]`: every benchmark (or the groups named), each bounded in time, listening only on
 * loopback or Unix sockets. BENCH_SECONDS sets the time per measurement (default 4).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchAttestation } from './attestation.js';
import { benchIssuance } from './issuance.js';
import { benchServerMemory } from './server-memory.js';
import { benchWorkload } from './workload-latency.js';
import { benchSdsPush } from './sds-push.js';
import { benchWithdrawalBurst } from './withdrawal-burst.js';
import { benchReconnectStorm } from './reconnect-storm.js';
import { report, type BenchResult } from './report.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 4);
/** Each group and the targets it reports on. */
const groups: Array<{ covers: string[]; run: () => Promise<BenchResult[]> }> = [
  { covers: ['P1'], run: () => benchIssuance(seconds) },
  { covers: ['P5'], run: () => benchServerMemory() },
  { covers: ['P2'], run: () => benchAttestation(seconds) },
  { covers: ['P2', 'P4', 'P6'], run: () => benchWorkload(seconds) },
  { covers: ['P3', 'P5'], run: () => benchSdsPush() },
  // Not a target: what a burst of withdrawals, each saved before workloads hear of it, costs a full agent.
  { covers: ['W'], run: () => benchWithdrawalBurst(seconds) },
  // Not a target: a server restart under thousands of agents holding Sync streams (BENCH_STORM_AGENTS, default 2000).
  { covers: ['S'], run: () => benchReconnectStorm() },
];
const wanted = process.argv.slice(2).map((a) => a.toUpperCase());
const unknown = wanted.filter((w) => !groups.some((g) => g.covers.includes(w)));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark ${unknown.join(', ')} (expected P1 to P6, W or S)\n`);
  process.exit(2);
}

// Every temp dir of this run (the benchmarks' tempDir() and the processes they start use os.tmpdir()) goes under one
// dir of its own, so that whatever a failed or interrupted benchmark leaves is removed with it, and nothing of another
// run sharing /tmp is.
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-bench-run-'));
process.env['TMPDIR'] = runDir;

/** This process's descendants (servers, agents, echo servers and their children), from /proc. */
function descendants(): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces or ')': the fields after its last ')' are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // exited while the list was read
    }
  }
  const found: number[] = [];
  for (let queue = [process.pid]; queue.length > 0; ) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** Kills what this run started and is still running and removes its temp dirs; then exits with `code`. */
function abort(code: number, why: string): never {
  process.stderr.write(`bench: ${why}; stopping the processes it started and removing ${runDir}\n`);
  for (const pid of descendants()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  fs.rmSync(runDir, { recursive: true, force: true });
  process.exit(code);
}

process.once('SIGINT', () => abort(130, 'interrupted'));
process.once('SIGTERM', () => abort(143, 'terminated'));

// A benchmark whose server or agent hangs (a stop that waits for an exit that never comes, a stream that never
// answers) must not hold the run forever: each group gets a bound, far above what it takes (P3/P5 with its 45 s of
// RSS sampling and 10,000 signings is the longest, a few minutes).
const groupLimitMs = Number(process.env['BENCH_GROUP_TIMEOUT_S'] ?? 1200) * 1000;

process.stdout.write(`meshid bench — node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB\n`);
try {
  for (const g of groups) {
    if (wanted.length > 0 && !g.covers.some((c) => wanted.includes(c))) continue;
    const watchdog = setTimeout(() => abort(1, `${g.covers.join('/')} did not finish within ${groupLimitMs / 1000} s`), groupLimitMs);
    try {
      report(await g.run());
    } finally {
      clearTimeout(watchdog);
    }
  }
} catch (err) {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  abort(1, 'a benchmark failed');
}
fs.rmSync(runDir, { recursive: true, force: true });
