/**
 * P3 probe (not part of `npm run bench`): the P3 setup (10,000 other entries, 1,000 SDS streams on 10 connections),
 * then many single renewals, each with the agent's and this process's CPU as well as the wall-clock arrivals, so
 * that builds can be compared on a machine whose other load makes P3's wall clock noisy.
 *
 *   node dist/bench/sds-push-probe.js [renewals]     (PROBE_STREAMS, PROBE_CONNECTIONS, PROBE_ENTRIES, PROBE_WINDOW_MB, PROBE_BARE)
 *
 * Agent CPU is its main thread's (/proc/<pid>/task/<pid>/schedstat, ns) and the whole process's (/proc/<pid>/stat,
 * 10 ms ticks), from the admin call sent until the last stream's arrival and 300 ms after (the ACKs).
 *
 * PROBE_BARE=1: after each renewal, P3's baseline server (sds-push-server.ts, as many streams of the same client)
 * pushes one message of the agent's push size, its main-thread CPU measured the same way, from the trigger until the
 * last arrival and 300 ms after: the push's cost without meshid, on the machine as it is at that moment.
 *
 * PROBE_TRACE_DIR=<dir>: from the first renewal on, `perf record` the agent's page faults (each with its address) and
 * its madvise/mmap/munmap/brk/mprotect calls (CLOCK_MONOTONIC, as process.hrtime), and write each renewal's window
 * (windows.json) and the agent's /proc/<pid>/maps at each window's end (maps-<round>.txt), for
 * bench/fault-sources.py to sort the faults by the mapping they hit. Needs perf and the right to trace the agent.
 */
import fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { startClusterWithAgent } from '../test/support/cluster.js';
import { connectSidecars, SidecarStream } from './sidecar-stream.js';
import { createIdleEntries, signingSettled } from './full-agent.js';
import { percentile } from './stats.js';
import { BarePushServer } from './sds-push-baseline.js';

const renewals = Number(process.argv[2] ?? 20);
const STREAMS = Number(process.env['PROBE_STREAMS'] ?? 1000);
const CONNECTIONS = Number(process.env['PROBE_CONNECTIONS'] ?? 10);
const ENTRIES = Number(process.env['PROBE_ENTRIES'] ?? 10_000);
const windowMb = Number(process.env['PROBE_WINDOW_MB'] ?? 0);
const withBare = process.env['PROBE_BARE'] === '1';
const traceDir = process.env['PROBE_TRACE_DIR'];
const agentNodeArgs = (process.env['MESHID_BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');

function mainThreadNs(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]);
}
function processMs(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}
function minorFaults(pid: number | 'self'): number {
  return Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[7]);
}
function selfMainNs(): number {
  return mainThreadNs(process.pid);
}

const { cluster, agent } = await startClusterWithAgent('meshid-probe-sds-', ['spiffe://example.org/bench/envoy'], { nodeArgs: agentNodeArgs });
try {
  const pid = agent.child.pid!;
  await createIdleEntries(cluster, ENTRIES);
  const clients = Array.from({ length: CONNECTIONS }, () => {
    const c = connectSidecars(agent.socketPath);
    if (windowMb > 0) c.on('connect', () => c.setLocalWindowSize(windowMb * 2 ** 20));
    return c;
  });
  const streams: SidecarStream[] = [];
  const firsts: Array<Promise<number>> = [];
  for (let i = 0; i < STREAMS; i++) {
    const s = new SidecarStream(clients[i % CONNECTIONS]!, `sidecar-${i}`, ['default']);
    streams.push(s);
    firsts.push(s.nextVersion());
  }
  await Promise.all(firsts);
  await signingSettled(() => agent.output());
  const envoyIssued = (): number[] =>
    agent
      .output()
      .split('\n')
      .filter((l) => l.includes('"msg":"X509-SVID issued"') && l.includes('"spiffeId":"spiffe://example.org/bench/envoy"'))
      .map((l) => (JSON.parse(l) as { time: number }).time);
  const envoy = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: 'spiffe://example.org/bench/envoy' })).entries![0]!;
  const rows: string[] = [];
  const all: number[] = [];
  const agentNs: number[] = [];
  const selfNs: number[] = [];
  const bareNs: number[] = [];
  let bare: BarePushServer | undefined;
  let perf: ChildProcess | undefined;
  const windows: Array<{ round: number; from: string; to: string }> = [];
  if (traceDir !== undefined) {
    fs.mkdirSync(traceDir, { recursive: true });
    const events = ['page-faults', 'syscalls:sys_enter_madvise', 'syscalls:sys_enter_mmap', 'syscalls:sys_enter_munmap', 'syscalls:sys_enter_brk', 'syscalls:sys_enter_mprotect'];
    perf = spawn('perf', ['record', '-q', '-c', '1', '-d', ...(process.env['PROBE_TRACE_CALLGRAPH'] === '1' ? ['--call-graph', 'dwarf,16384'] : []), '--clockid', 'monotonic', ...events.flatMap((e) => ['-e', e]), '-p', String(pid), '-o', `${traceDir}/perf.data`], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000));
  }
  for (let round = 0; round <= renewals; round++) {
    await new Promise((r) => setTimeout(r, 500));
    const from = process.hrtime.bigint();
    const arrivals = streams.map((s) => s.nextVersion());
    const issuedBefore = envoyIssued().length;
    const offset = Date.now() - performance.now();
    const a0 = mainThreadNs(pid);
    const p0 = processMs(pid);
    const s0 = selfMainNs();
    const f0 = minorFaults(pid);
    const g0 = minorFaults('self');
    await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: envoy.id, dns_names: [`envoy${round}.bench`] }, mask: ['dns_names'] });
    const arrived = await Promise.all(arrivals);
    const s1 = selfMainNs();
    const g1 = minorFaults('self');
    await new Promise((r) => setTimeout(r, 300));
    const a1 = mainThreadNs(pid);
    const p1 = processMs(pid);
    const f1 = minorFaults(pid);
    if (traceDir !== undefined) {
      windows.push({ round, from: String(from), to: String(process.hrtime.bigint()) });
      fs.writeFileSync(`${traceDir}/maps-${round}.txt`, fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
    }
    let renewedAt: number | undefined;
    while ((renewedAt = envoyIssued()[issuedBefore]) === undefined) await new Promise((r) => setTimeout(r, 20));
    const lat = arrived.map((t) => t + offset - renewedAt!);
    const first = Math.min(...lat);
    const p99 = percentile(lat, 99);
    const last = Math.max(...lat);
    rows.push(
      `${round === 0 ? 'first' : `r${round}`}\tfirst ${first.toFixed(0)}\tp50 ${percentile(lat, 50).toFixed(0)}\tp99 ${p99.toFixed(0)}\tlast ${last.toFixed(0)} ms` +
        `\tagent main ${((a1 - a0) / 1e6).toFixed(1)} ms\tagent proc ${(p1 - p0).toFixed(0)} ms\tbench main ${((s1 - s0) / 1e6).toFixed(1)} ms\tfaults agent ${f1 - f0} bench ${g1 - g0}`,
    );
    if (round > 0) {
      all.push(...lat);
      agentNs.push((a1 - a0) / 1e6);
      selfNs.push((s1 - s0) / 1e6);
    }
    if (!withBare) continue;
    if (bare === undefined) {
      bare = await BarePushServer.start(`${cluster.dir}/bare-sds.sock`, percentile(streams.map((s) => s.lastBytes), 50), STREAMS, CONNECTIONS);
      await bare.push(renewals + 1);
    }
    await new Promise((r) => setTimeout(r, 200));
    const b0 = mainThreadNs(bare.pid);
    const b = await bare.push(round);
    await new Promise((r) => setTimeout(r, 300));
    const b1 = mainThreadNs(bare.pid);
    rows[rows.length - 1] += `\tbare p99 ${percentile(b.latencies, 99).toFixed(0)} ms main ${((b1 - b0) / 1e6).toFixed(1)} ms cpuUsage ${b.cpuMs.toFixed(1)} ms`;
    if (round > 0) bareNs.push((b1 - b0) / 1e6);
  }
  bare?.stop();
  if (perf !== undefined) {
    const exited = new Promise((r) => perf!.once('exit', r));
    perf.kill('SIGINT');
    await exited;
    fs.writeFileSync(`${traceDir}/windows.json`, JSON.stringify(windows));
  }
  for (const r of rows) process.stdout.write(`${r}\n`);
  process.stdout.write(
    `SUMMARY renewals ${renewals}: p50 ${percentile(all, 50).toFixed(0)} p99 ${percentile(all, 99).toFixed(0)} ms; agent main-thread CPU per renewal median ${percentile(agentNs, 50).toFixed(1)} ms (p90 ${percentile(agentNs, 90).toFixed(1)}); bench main-thread CPU median ${percentile(selfNs, 50).toFixed(1)} ms` +
      (withBare ? `; bare server main-thread CPU per push median ${percentile(bareNs, 50).toFixed(1)} ms (p90 ${percentile(bareNs, 90).toFixed(1)})` : '') +
      '\n',
  );
  for (const s of streams) s.cancel();
  for (const c of clients) c.close();
  // A profile (--cpu-prof) is written only at a clean exit.
  await agent.stop('SIGTERM');
  if (process.env['PROBE_AGENT_OUTPUT'] !== undefined) fs.writeFileSync(process.env['PROBE_AGENT_OUTPUT'], agent.output());
} finally {
  await cluster.cleanup().catch(() => undefined);
}
