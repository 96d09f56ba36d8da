/**
 * P5 (server half) — meshid-server RSS holding 10,000 entries for 10,000 agents, against its own idle RSS in the
 * same run. A real server process; entries created through the admin API in batches, as an operator's tooling would.
 */
import fs from 'node:fs';
import { AdminClient } from '../src/server/cli/admin-client.js';
import { tempDir } from '../test/support/server-kit.js';
import { startServerProcess } from '../test/support/server-process.js';
import type { BenchResult } from './report.js';

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

export async function benchServerMemory(entries = 10_000): Promise<BenchResult[]> {
  const { dir, cleanup } = tempDir('meshid-bench-mem-');
  const server = await startServerProcess(dir);
  const client = new AdminClient(server.adminSocket, 120_000);
  try {
    await new Promise((r) => setTimeout(r, 500));
    const idle = rssMb(server.child.pid!);
    const started = process.hrtime.bigint();
    for (let i = 0; i < entries; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, entries - i) }, (_, j) => ({
        spiffe_id: `spiffe://example.org/bench/w${i + j}`,
        parent_id: `spiffe://example.org/meshid/agent/east/agent-${i + j}`,
        selectors: [{ type: 'unix', value: `uid:${10_000 + ((i + j) % 500)}` }],
      }));
      const res = await client.call('Entries', 'CreateEntries', { entries: batch });
      const failed = (res.results ?? []).filter((r) => (r.status?.code ?? 0) !== 0);
      if (failed.length > 0) throw new Error(`entry create failed: ${JSON.stringify(failed[0])}`);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await new Promise((r) => setTimeout(r, 500));
    const loaded = rssMb(server.child.pid!);
    return [
      { name: 'P5 server idle RSS (baseline)', value: idle, unit: 'MB' },
      { name: `P5 server RSS with ${entries} entries of ${entries} agents`, value: loaded, unit: 'MB', ratio: loaded / idle },
      { name: 'P5 entry create throughput (admin API, batches of 1,000)', value: entries / seconds, unit: 'entries/s' },
    ];
  } finally {
    client.close();
    await server.stop();
    cleanup();
  }
}
