/**
 * `npm run bench [-- P1 P3 W ...]`: every benchmark (or the groups named), each bounded in time, listening only on
 * loopback or Unix sockets. BENCH_SECONDS sets the time per measurement (default 4).
 */
import os from 'node:os';
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
process.stdout.write(`meshid bench — node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB\n`);
for (const g of groups) {
  if (wanted.length === 0 || g.covers.some((c) => wanted.includes(c))) report(await g.run());
}
