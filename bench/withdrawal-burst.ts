/**
 * W — a burst of withdrawals on a full agent: an operator deletes 1,000 of the agent's 10,000 entries one admin call
 * at a time (as `meshid-server entry delete` does), so each can reach the agent as a Sync update of its own, and each
 * is saved before any workload hears of it. Measured: how long until the agent holds none of them, how many journal
 * batches that wrote, and FetchX509SVID first-message latency of another workload during the burst against the same
 * agent idle. Real server and agent processes; loopback and Unix sockets only.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connectWorkloadApi } from '../src/agent/cli/workload-client.js';
import { loadProto } from '../src/common/grpc/proto.js';
import { serviceClient } from '../src/common/grpc/service.js';
import { startClusterWithAgent } from '../test/support/cluster.js';
import { percentile } from './stats.js';
import type { BenchResult } from './report.js';

const ENTRIES = 10_000;
const DELETES = 1000;
/** One sampled FetchX509SVID per this many ms: a steady probe, not a load of its own on the two cores. */
const SAMPLE_EVERY_MS = 5;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** FetchX509SVID first-message latencies, one call at a time, until `stop()`; the client is replaced every 500 calls. */
function sampleFetches(socketPath: string): { stop: () => Promise<number[]> } {
  let running = true;
  const done = (async () => {
    const latencies: number[] = [];
    let client = connectWorkloadApi(socketPath, { ownConnection: true });
    for (let uses = 1; running; uses++) {
      // Node's HTTP/2 rapid-reset protection closes a connection that cancels too many streams (workload-latency.ts).
      if (uses > 500) {
        client.close();
        client = connectWorkloadApi(socketPath, { ownConnection: true });
        uses = 1;
      }
      const started = performance.now();
      await client.fetchX509Svid();
      latencies.push(performance.now() - started);
      await sleep(SAMPLE_EVERY_MS);
    }
    client.close();
    return latencies;
  })();
  return {
    stop: () => {
      running = false;
      return done;
    },
  };
}

/** The agent's entry count, from the `meshid-entries` trailer of its health check. */
function entriesHeld(health: grpc.Client): Promise<number> {
  return new Promise((resolve, reject) => {
    const check = (health as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>)['Check']!;
    const call = check.call(health, { service: '' }, (err) => {
      if (err) reject(err);
    });
    call.on('status', (s: grpc.StatusObject) => resolve(Number(s.metadata.get('meshid-entries')[0])));
  });
}

/** Batches in the agent's current state journal (one per save that changed something). */
function journalBatches(dataDir: string): { file: string; batches: number } {
  const file = fs.readdirSync(dataDir).find((n) => /^state\.\d+\.journal$/.test(n)) ?? '';
  const text = file === '' ? '' : fs.readFileSync(path.join(dataDir, file), 'utf8');
  return { file, batches: text.split('\n').length - 1 };
}

export async function benchWithdrawalBurst(seconds: number): Promise<BenchResult[]> {
  const { cluster, agent } = await startClusterWithAgent('meshid-bench-withdraw-', ['spiffe://example.org/bench/watcher']);
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const health = new Health(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  try {
    // Entries for other workloads on this host (uids nobody uses), as in P3.
    const ids: string[] = [];
    for (let i = 0; i < ENTRIES; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, ENTRIES - i) }, (_, j) => ({
        spiffe_id: `spiffe://example.org/bench/w${i + j}`,
        parent_id: 'spiffe://example.org/node/east',
        selectors: [{ type: 'unix', value: `uid:${200_000 + i + j}` }],
      }));
      const created = await cluster.admin.call('Entries', 'CreateEntries', { entries: batch });
      for (const r of created.results ?? []) ids.push(r.entry!.id!);
    }
    // Until the agent has signed them all (no issuance logged for 3 s) and saved that.
    const issued = (): number => (agent.output().match(/X509-SVIDs issued/g) ?? []).length;
    for (let last = -1, quietSince = performance.now(); performance.now() - quietSince < 3000; ) {
      await sleep(500);
      if (issued() !== last) {
        last = issued();
        quietSince = performance.now();
      }
    }

    let sampler = sampleFetches(agent.socketPath);
    await sleep(seconds * 1000);
    const idle = await sampler.stop();

    const before = journalBatches(agent.dataDir);
    sampler = sampleFetches(agent.socketPath);
    const started = performance.now();
    for (const id of ids.slice(0, DELETES)) await cluster.admin.call('Entries', 'DeleteEntries', { ids: [id] });
    const callsDone = performance.now() - started;
    while ((await entriesHeld(health)) > ENTRIES + 1 - DELETES) await sleep(1);
    const reflected = performance.now() - started;
    const during = await sampler.stop();
    // Let the coalesced save that follows the burst land, so the count includes it.
    await sleep(1000);
    const after = journalBatches(agent.dataDir);
    const batches = after.file === before.file ? `${after.batches - before.batches} journal batches` : 'snapshot rewritten';

    const idleP50 = percentile(idle, 50);
    const idleP99 = percentile(idle, 99);
    return [
      { name: `W baseline: ${DELETES} single entry deletes (admin API, one call each), agent holding ${ENTRIES + 1} SVIDs: admin calls done`, value: callsDone, unit: 'ms' },
      { name: `W ... → the agent holds none of them (${batches} saved)`, value: reflected, unit: 'ms', ratio: reflected / callsDone },
      { name: `W baseline: FetchX509SVID first message p50, agent idle with ${ENTRIES + 1} SVIDs`, value: idleP50, unit: 'ms' },
      { name: `W FetchX509SVID first message p50 during the deletes`, value: percentile(during, 50), unit: 'ms', ratio: percentile(during, 50) / idleP50 },
      { name: `W baseline: FetchX509SVID first message p99, agent idle with ${ENTRIES + 1} SVIDs`, value: idleP99, unit: 'ms' },
      { name: `W FetchX509SVID first message p99 during the deletes (${during.length} calls)`, value: percentile(during, 99), unit: 'ms', ratio: percentile(during, 99) / idleP99 },
    ];
  } finally {
    health.close();
    await cluster.cleanup().catch(() => undefined);
  }
}
