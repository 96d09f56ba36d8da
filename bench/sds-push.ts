/**
 * P3 — rotation push: time from an SVID renewal to the new secret arriving on each of 1,000 open SDS streams (SotW,
 * `default`, ACKed like Envoy). The renewal is forced the way an operator would: `ca taint` of the datacenter
 * intermediate makes the agent re-sign; the clock starts when the admin call returns, so server push and agent
 * signing are included. P5 (agent half) — agent RSS with those 1,000 streams and 10,000 entries vs its idle RSS.
 */
import fs from 'node:fs';
import { startClusterWithAgent } from '../test/support/cluster.js';
import { connectSidecars, SidecarStream } from './sidecar-stream.js';
import { timeToServeFromCache } from './agent-restart.js';
import { createIdleEntries, signingSettled } from './full-agent.js';
import { percentile } from './stats.js';
import type { BenchResult } from './report.js';

const STREAMS = 1000;
const CONNECTIONS = 10;
/** Renewals measured after the first one. */
const RENEWALS = 5;

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

export async function benchSdsPush(entries = 10_000): Promise<BenchResult[]> {
  const { cluster, agent } = await startClusterWithAgent('meshid-bench-sds-', ['spiffe://example.org/bench/envoy']);
  try {
    await new Promise((r) => setTimeout(r, 500));
    const idle = rssMb(agent.child.pid!);

    await createIdleEntries(cluster, entries);

    const clients = Array.from({ length: CONNECTIONS }, () => connectSidecars(agent.socketPath));
    const streams: SidecarStream[] = [];
    const firsts: Array<Promise<number>> = [];
    for (let i = 0; i < STREAMS; i++) {
      const s = new SidecarStream(clients[i % CONNECTIONS]!, `sidecar-${i}`, ['default']);
      streams.push(s);
      firsts.push(s.nextVersion());
    }
    await withTimeout(Promise.all(firsts), 120_000, 'the first SDS responses');
    // Wait until the agent has signed the other entries too (no new issuance logged for 3 s, at most 5 min), so the
    // push measured is the rotation alone.
    await signingSettled(() => agent.output());
    // P5 is a steady-state figure: V8's memory reducer collects the signing burst's garbage some 10-30 s after the
    // agent goes quiet, and the agent then returns the freed native pages. Sample for 45 s; report the peak and the
    // RSS at the end.
    let peak = rssMb(agent.child.pid!);
    for (let i = 0; i < 45; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      peak = Math.max(peak, rssMb(agent.child.pid!));
    }
    const loaded = rssMb(agent.child.pid!);

    /** Starts `trigger` and returns, per stream, how long until a new version of `default` arrived. */
    const pushLatencies = async (trigger: () => Promise<unknown>): Promise<number[]> => {
      const arrivals = streams.map((s) => s.nextVersion());
      await trigger();
      const started = performance.now();
      return (await withTimeout(Promise.all(arrivals), 300_000, 'the pushed secrets')).map((t) => t - started);
    };
    // One SVID renewed: an entry change makes the agent re-sign exactly that SVID. The first renewal after start
    // runs the push path for the first time (V8 has not optimized it yet) and is reported on its own; the target
    // is judged on the renewals after it, as on an agent that has been serving for a while.
    const envoy = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: 'spiffe://example.org/bench/envoy' })).entries![0]!;
    const renew = (round: number) => () =>
      cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: envoy.id, dns_names: [`envoy${round}.bench`] }, mask: ['dns_names'] });
    const firstRenewal = await pushLatencies(renew(0));
    const single: number[] = [];
    const perRenewal: number[] = [];
    for (let round = 1; round <= RENEWALS; round++) {
      await new Promise((r) => setTimeout(r, 500));
      const latencies = await pushLatencies(renew(round));
      perRenewal.push(percentile(latencies, 99));
      single.push(...latencies);
    }
    // Every SVID renewed at once: tainting the intermediate makes the agent re-sign all of them.
    const authorities = await cluster.admin.call('Authorities', 'ListAuthorities', {});
    const intermediate = (authorities.authorities ?? []).find((a) => a.kind === 'intermediate' && a.state === 'active')!;
    const mass = await pushLatencies(() => cluster.admin.call('Authorities', 'TaintAuthority', { id: intermediate.id! }));
    for (const s of streams) s.cancel();
    for (const c of clients) c.close();

    // P6 with a full cache: the same agent restarted with the server down, until a workload gets its SVID.
    await agent.stop('SIGTERM');
    await cluster.server.stop();
    const restart = await timeToServeFromCache(cluster, agent.dataDir);
    return [
      { name: `P6 agent start → serving cached SVIDs, server down, ${entries + 1} SVIDs cached`, value: restart, unit: 'ms', target: '< 500 ms' },
      { name: `P3 first renewal after start → new secret on ${STREAMS} SDS streams p99`, value: percentile(firstRenewal, 99), unit: 'ms' },
      { name: `P3 one SVID renewed → new secret on ${STREAMS} SDS streams p50 (${RENEWALS} renewals)`, value: percentile(single, 50), unit: 'ms' },
      { name: `P3 one SVID renewed → new secret on ${STREAMS} SDS streams p99 (${RENEWALS} renewals, ${single.length} arrivals)`, value: percentile(single, 99), unit: 'ms', target: '< 100 ms' },
      { name: `P3 worst single-renewal p99 (each renewal ${perRenewal.map((v) => v.toFixed(0)).join(', ')} ms)`, value: Math.max(...perRenewal), unit: 'ms' },
      { name: `P3 intermediate tainted → ${entries + 1} SVIDs re-signed, watched one on ${STREAMS} streams p99`, value: percentile(mass, 99), unit: 'ms' },
      { name: 'P5 agent idle RSS (baseline)', value: idle, unit: 'MB' },
      { name: `P5 agent RSS peak while signing ${entries} SVIDs and opening ${STREAMS} streams`, value: peak, unit: 'MB', ratio: peak / idle },
      { name: `P5 agent RSS with ${STREAMS} open streams and ${entries} entries, 45 s after the last SVID`, value: loaded, unit: 'MB', ratio: loaded / idle, target: '< 150 MB' },
    ];
  } finally {
    await cluster.cleanup().catch(() => undefined);
  }
}
