/**
 * P3 — rotation push: time from an SVID renewal to the new secret arriving on each of 1,000 open SDS streams (SotW,
 * `default`, ACKed like Envoy). A renewal of the one SVID is forced by an entry change the next certificate carries (its
 * DNS names); the clock starts at the renewal, when the agent logs the new SVID going into its cache. The mass
 * rotation (`ca taint` of the datacenter intermediate: the agent re-signs all) is timed from the admin call sent. P5 (agent half) — agent RSS with those 1,000 streams and 10,000 entries vs its idle RSS.
 */
import fs from 'node:fs';
import path from 'node:path';
import { startClusterWithAgent } from '../test/support/cluster.js';
import { connectSidecars, SidecarStream } from './sidecar-stream.js';
import { timeToServeFromCache } from './agent-restart.js';
import { createIdleEntries, signingSettled } from './full-agent.js';
import { percentile } from './stats.js';
import { BarePushServer } from './sds-push-baseline.js';
import type { BenchResult } from './report.js';

const STREAMS = 1000;
const CONNECTIONS = 10;
/** Renewals measured after the first one. */
const RENEWALS = 5;
/**
 * Extra node flags for the agent, e.g. MESHID_BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof', '--trace-gc' or
 * '--import=file:///…/bench/gc-log.mjs'. With P3_AGENT_LOG set, the agent's output and a last `P3WINDOWS [json]` line (the
 * P5 sample's time, then each renewal's wall-clock window and the agent's CPU in it, main thread and other threads) go
 * to that file.
 */
const agentNodeArgs = (process.env['MESHID_BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** utime + stime of a process, in ms (clock ticks of 10 ms: summed over the renewals, a mean is good to ~2 ms). */
function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** utime + stime in ms of the process's main thread (its tid is its pid) and of all its other threads together. */
function threadCpuMs(pid: number): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = (Number(f[11]) + Number(f[12])) * 10;
    if (tid === String(pid)) main += ms;
    else other += ms;
  }
  return { main, other };
}

function mean(sample: number[]): number {
  return sample.reduce((a, b) => a + b, 0) / sample.length;
}

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

export async function benchSdsPush(entries = 10_000): Promise<BenchResult[]> {
  const { cluster, agent } = await startClusterWithAgent('meshid-bench-sds-', ['spiffe://example.org/bench/envoy'], { nodeArgs: agentNodeArgs });
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
    /** For P3_AGENT_LOG: when each measured renewal ran (wall ms) and the agent's CPU in it by thread. */
    const windows: Array<Record<string, number>> = [{ p5: Date.now() }];

    /** The agent's own time (epoch ms) of each "X509-SVID issued" line for the watched SVID so far. */
    const envoyIssued = (): number[] =>
      agent
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"X509-SVID issued"') && l.includes('"spiffeId":"spiffe://example.org/bench/envoy"'))
        .map((l) => (JSON.parse(l) as { time: number }).time);
    /**
     * Starts `trigger` and returns, per stream, how long until a new version of `default` arrived: from the renewal
     * (the agent's log line of the new SVID, written as it goes into the cache, before the push) or from the moment
     * the admin call was sent. Not from the admin call's return: that counted the entry change's way to the agent
     * and the signing round trip (15-40 ms in a spot check on a loaded machine) as push time, and nothing orders the
     * answer's arrival here before the renewal, so on a busy machine the clock could also start late.
     */
    const pushLatencies = async (trigger: () => Promise<unknown>, from: 'renewal' | 'call'): Promise<number[]> => {
      const arrivals = streams.map((s) => s.nextVersion());
      const issuedBefore = envoyIssued().length;
      const sentAt = Date.now() - performance.now();
      const sent = performance.now();
      await trigger();
      const arrived = await withTimeout(Promise.all(arrivals), 300_000, 'the pushed secrets');
      if (from === 'call') return arrived.map((t) => t - sent);
      // The agent's clock is this machine's wall clock, to the millisecond: arrivals go to it with the offset read
      // when the call was sent, a few hundred ms earlier, so the monotonic and wall clocks cannot drift apart between.
      let renewedAt: number | undefined;
      for (const until = performance.now() + 10_000; (renewedAt = envoyIssued()[issuedBefore]) === undefined; ) {
        if (performance.now() > until) throw new Error('no "X509-SVID issued" line of the renewed SVID in the agent log');
        await new Promise((r) => setTimeout(r, 20));
      }
      return arrived.map((t) => t + sentAt - renewedAt!);
    };
    // One SVID renewed: an entry change makes the agent re-sign exactly that SVID. The first renewal after start
    // runs the push path for the first time (V8 has not optimized it yet) and is reported on its own; the target
    // is judged on the renewals after it, as on an agent that has been serving for a while.
    const envoy = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: 'spiffe://example.org/bench/envoy' })).entries![0]!;
    const renew = (round: number) => () =>
      cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: envoy.id, dns_names: [`envoy${round}.bench`] }, mask: ['dns_names'] });
    const firstFrom = Date.now();
    const firstThreads = threadCpuMs(agent.child.pid!);
    const firstRenewal = await pushLatencies(renew(0), 'renewal');
    const firstThreadsAfter = threadCpuMs(agent.child.pid!);
    windows.push({ round: 0, from: firstFrom, to: Date.now(), main: firstThreadsAfter.main - firstThreads.main, other: firstThreadsAfter.other - firstThreads.other });
    // The baseline: a bare grpc-js server (sds-push-server.ts) pushing one pre-encoded message of the size the agent
    // just pushed to as many streams of the same client; its pushes alternate with the agent's renewals, so the
    // machine's drift falls on both alike, and it also gets one unmeasured push first.
    const pushBytes = percentile(streams.map((s) => s.lastBytes), 50);
    const bare = await withTimeout(BarePushServer.start(path.join(cluster.dir, 'bare-sds.sock'), pushBytes, STREAMS, CONNECTIONS), 120_000, 'bare SDS server streams');
    const single: number[] = [];
    const perRenewal: number[] = [];
    const agentCpu: number[] = [];
    const bareSingle: number[] = [];
    const bareCpu: number[] = [];
    try {
      await withTimeout(bare.push(RENEWALS + 1), 60_000, 'unmeasured bare push');
      for (let round = 1; round <= RENEWALS; round++) {
        await new Promise((r) => setTimeout(r, 500));
        const before = cpuMs(agent.child.pid!);
        const threadsBefore = threadCpuMs(agent.child.pid!);
        const from = Date.now();
        const latencies = await pushLatencies(renew(round), 'renewal');
        // The ACKs and the coalesced state save (due 200 ms after the entry change) belong to the renewal too.
        await new Promise((r) => setTimeout(r, 300));
        agentCpu.push(cpuMs(agent.child.pid!) - before);
        const threadsAfter = threadCpuMs(agent.child.pid!);
        windows.push({ round, from, to: Date.now(), cpu: agentCpu[agentCpu.length - 1]!, main: threadsAfter.main - threadsBefore.main, other: threadsAfter.other - threadsBefore.other });
        perRenewal.push(percentile(latencies, 99));
        single.push(...latencies);
        await new Promise((r) => setTimeout(r, 200));
        const b = await withTimeout(bare.push(round), 60_000, 'bare push');
        bareSingle.push(...b.latencies);
        bareCpu.push(b.cpuMs);
      }
    } finally {
      bare.stop();
    }
    // Every SVID renewed at once: tainting the intermediate makes the agent re-sign all of them.
    const authorities = await cluster.admin.call('Authorities', 'ListAuthorities', {});
    const intermediate = (authorities.authorities ?? []).find((a) => a.kind === 'intermediate' && a.state === 'active')!;
    const mass = await pushLatencies(() => cluster.admin.call('Authorities', 'TaintAuthority', { id: intermediate.id! }), 'call');
    for (const s of streams) s.cancel();
    for (const c of clients) c.close();
    const logTo = process.env['P3_AGENT_LOG'];
    if (logTo !== undefined && logTo !== '') fs.writeFileSync(logTo, `${agent.output()}\nP3WINDOWS ${JSON.stringify(windows)}\n`);

    // P6 with a full cache: the same agent restarted with the server down, until a workload gets its SVID.
    await agent.stop('SIGTERM');
    await cluster.server.stop();
    const restart = await timeToServeFromCache(cluster, agent.dataDir);
    return [
      { name: `P6 agent start → serving cached SVIDs, server down, ${entries + 1} SVIDs cached`, value: restart, unit: 'ms', target: '< 500 ms' },
      { name: `P3 first renewal after start → new secret on ${STREAMS} SDS streams p99`, value: percentile(firstRenewal, 99), unit: 'ms' },
      { name: `P3 baseline: bare grpc-js push of one ${pushBytes}-byte message to ${STREAMS} streams p50`, value: percentile(bareSingle, 50), unit: 'ms' },
      { name: `P3 baseline: bare grpc-js push of one ${pushBytes}-byte message to ${STREAMS} streams p99`, value: percentile(bareSingle, 99), unit: 'ms' },
      { name: `P3 one SVID renewed → new secret on ${STREAMS} SDS streams p50 (${RENEWALS} renewals)`, value: percentile(single, 50), unit: 'ms', ratio: percentile(single, 50) / percentile(bareSingle, 50) },
      {
        name: `P3 one SVID renewed → new secret on ${STREAMS} SDS streams p99 (${RENEWALS} renewals, ${single.length} arrivals)`,
        value: percentile(single, 99),
        unit: 'ms',
        ratio: percentile(single, 99) / percentile(bareSingle, 99),
        target: '< 100 ms',
      },
      { name: `P3 baseline: bare grpc-js server CPU per push, trigger → last of ${STREAMS} ACKs (mean of ${RENEWALS}; each ${bareCpu.map((v) => v.toFixed(1)).join(', ')} ms)`, value: mean(bareCpu), unit: 'ms' },
      {
        name: `P3 agent CPU per renewal, admin call → 300 ms after the last arrival (/proc utime+stime, mean of ${RENEWALS}; each ${agentCpu.join(', ')} ms)`,
        value: mean(agentCpu),
        unit: 'ms',
        ratio: mean(agentCpu) / mean(bareCpu),
      },
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
