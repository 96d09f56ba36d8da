/**
 * S — a reconnect storm: meshid-server restarts (SIGTERM, as an upgrade does) while thousands of agents hold Sync
 * streams, and they all come back. Simulated agents (SimulatedAgent: each attested with its own join token and key,
 * holding its own entries and the datacenter's shared ones, on the real agent client and backoff) and a few real
 * agent processes. Measured: how long from the restart until every agent has its initial update again, against the
 * restart alone; how the reconnects are spread (stream opens per 100 ms); the server's CPU, peak RSS and longest
 * event-loop stall (a preloaded probe); the failed opens by status code; the server's RSS per connected agent once
 * settled, against a bare grpc-js server (bare-sync-server.ts) holding the same agents' streams. Loopback only.
 */
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../src/common/paths.js';
import { Cluster, restartServerProcess, startCluster, type AgentProcess } from '../test/support/cluster.js';
import { percentile } from './stats.js';
import type { BenchResult } from './report.js';
import { SimulatedAgent } from './simulated-agent.js';

const OWN_ENTRIES = 4;
/** BENCH_STORM_SHARED sets it: with thousands, each agent's first update is mostly entries every agent shares. */
const SHARED_ENTRIES = Number(process.env['BENCH_STORM_SHARED'] ?? 20);
const REAL_AGENTS = 3;
/** Attestations per source address: below the server's per-address burst (100), so none waits for its refill. */
const AGENTS_PER_ADDRESS = 80;
const WINDOW_MS = 100;
/**
 * How long after the storm the server's memory is read: V8's memory reducer shrinks the heap grown by the burst of
 * reconnects within ~20 s of it (measured: 311 → 279 MB with 2,003 streams), and RSS is flat after.
 */
const SETTLE_MS = 30_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A loopback relay to the server whose connections leave from 127.0.0.2, .3, …: one address per group of agents. */
async function attestRelay(serverPort: number): Promise<{ address: string; close: () => void }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const host = Math.floor(connections++ / AGENTS_PER_ADDRESS);
    const upstream = net.connect({ host: '127.0.0.1', port: serverPort, localAddress: `127.0.${Math.floor(host / 250)}.${2 + (host % 250)}` });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        (s === client ? upstream : client).destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** The server's CPU time so far (user + system), in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

/**
 * The longest event-loop delay the probe recorded at or after `since` (epoch ms), of process `pid` when given. A line
 * comes at the end of the 100 ms it covers, so a stall is counted in the line written just after it.
 */
function longestStall(file: string, since: number, pid?: number): number {
  if (!fs.existsSync(file)) return Number.NaN;
  let max = 0;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [at, delay, by] = line.split(' ').map(Number);
    if (at !== undefined && delay !== undefined && at >= since && (pid === undefined || by === pid)) max = Math.max(max, delay);
  }
  return max;
}

async function inBatches<T>(count: number, concurrency: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await make(i);
      }
    }),
  );
  return out;
}

/** bench/bare-sync-server.js with the cluster's server SVID and bundle; resolves with the process and its address. */
async function startBareSyncServer(cluster: Cluster): Promise<{ child: ChildProcess; address: string }> {
  const main = path.join(packageRoot, 'dist', 'bench', 'bare-sync-server.js');
  const child = spawn(process.execPath, [main, path.join(cluster.dir, 'server', 'data', 'server-svid.json'), cluster.bundleFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bare-sync-server exited with ${code}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
  });
  return { child, address: `127.0.0.1:${out.split('\n')[0]}` };
}

function reopened(agent: AgentProcess): number {
  return agent.output().split('\n').filter((l) => l.includes('Sync stream re-opened') || l.includes('in sync with meshid-server')).length;
}

export async function benchReconnectStorm(agentCount = Number(process.env['BENCH_STORM_AGENTS'] ?? 2000)): Promise<BenchResult[]> {
  const profileDir = process.env['BENCH_STORM_CPU_PROF'];
  const probeFile = path.join(profileDir ?? fs.mkdtempSync('/tmp/meshid-bench-eld-'), 'server-event-loop');
  const cluster: Cluster = await startCluster('meshid-bench-storm-', [], {
    NODE_OPTIONS: `--import=${pathToFileURL(path.join(packageRoot, 'bench', 'event-loop-probe.mjs')).href}`,
    MESHID_BENCH_EVENT_LOOP_FILE: probeFile,
    // BENCH_STORM_CPU_PROF=<dir>: each server process writes a V8 CPU profile there as it exits (the old one at the
    // restart, the new one at cleanup), with the event-loop probe's lines kept beside them.
    ...(profileDir !== undefined && { MESHID_BENCH_CPU_PROF: profileDir }),
  });
  const agents: SimulatedAgent[] = [];
  const real: AgentProcess[] = [];
  const opens: number[] = [];
  const relay = await attestRelay(Number(cluster.server.address().split(':')[1]));
  let bare: ChildProcess | undefined;
  const mirrors: SimulatedAgent[] = [];
  try {
    await sleep(1000);
    const rssIdle = statusMb(cluster.server.pid!, 'VmRSS');
    const roots = (await cluster.admin.call('Bundles', 'GetBundle', {})).x509_authorities ?? [];
    for (let i = 0; i < SHARED_ENTRIES; i++) await cluster.createEntry({ spiffeId: `spiffe://example.org/shared/w${i}`, selectors: [`unix:uid:${20_000 + i}`] });
    const tokens = await inBatches(agentCount, 16, async () => (await cluster.admin.call('Tokens', 'GenerateJoinToken', { datacenter: 'east' })).token!);
    const attestStarted = performance.now();
    agents.push(...(await inBatches(agentCount, 16, (i) => SimulatedAgent.attest(cluster.server.address(), relay.address, tokens[i]!, roots, () => opens.push(performance.now())))));
    const attestMs = performance.now() - attestStarted;
    for (let i = 0; i < agentCount; i += 1000) {
      const batch = agents.slice(i, i + 1000).flatMap((a, j) =>
        Array.from({ length: OWN_ENTRIES }, (_, k) => ({
          spiffe_id: `spiffe://example.org/own/a${i + j}/w${k}`,
          parent_id: a.id,
          selectors: [{ type: 'unix', value: `uid:${10_000 + k}` }],
        })),
      );
      for (let b = 0; b < batch.length; b += 1000) await cluster.admin.call('Entries', 'CreateEntries', { entries: batch.slice(b, b + 1000) });
    }
    for (let i = 0; i < REAL_AGENTS; i++) real.push(await cluster.startAgent({ name: `agent${i}`, joinToken: await cluster.token() }));

    // Cold: every simulated agent opens its first stream at once (nothing held: each gets all its entries).
    const coldStarted = performance.now();
    const coldCpuAtStart = cpuSeconds(cluster.server.pid!);
    for (const a of agents) a.start();
    await Promise.all(agents.map((a) => a.synced()));
    const coldMs = performance.now() - coldStarted;
    const coldCpu = cpuSeconds(cluster.server.pid!) - coldCpuAtStart;
    const held = agents.reduce((n, a) => n + a.entries, 0) / agents.length;
    for (const a of real) await a.waitForLog(/in sync with meshid-server/);
    await sleep(2000);
    opens.length = 0;
    for (const a of agents) a.failures.clear();
    const realBefore = real.map(reopened);

    // The storm: SIGTERM (every stream ends UNAVAILABLE at once), a new process on the same port and data dir.
    const ownLoop = monitorEventLoopDelay({ resolution: 10 });
    ownLoop.enable();
    const rssBefore = statusMb(cluster.server.pid!, 'VmRSS');
    const restartStarted = performance.now();
    const restartEpoch = Date.now();
    await cluster.server.stop();
    const stoppedMs = performance.now() - restartStarted;
    await restartServerProcess(cluster);
    const restartMs = performance.now() - restartStarted;
    const servingEpoch = Date.now();
    const pid = cluster.server.pid!;
    const cpuAtStart = cpuSeconds(pid);
    let rssPeak = 0;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, statusMb(pid, 'VmRSS'))), 50);
    const stragglers = Promise.all(agents.map((a) => a.synced(restartStarted)));
    const deadline = sleep(180_000).then(() => 'timeout' as const);
    const outcome = await Promise.race([stragglers.then(() => 'done' as const), deadline]);
    for (const [i, a] of real.entries()) {
      while (reopened(a) <= realBefore[i]! && performance.now() - restartStarted < 180_000) await sleep(50);
    }
    const allMs = performance.now() - restartStarted;
    clearInterval(sampler);
    const cpu = cpuSeconds(pid) - cpuAtStart;
    rssPeak = Math.max(rssPeak, statusMb(pid, 'VmHWM'));
    const stall = longestStall(probeFile, restartEpoch);
    // Its own start (module loading, the protos, the datastore's entries and agents read) is in `stall` too, but no
    // agent waits on it: the port is not bound yet. Once healthy, a stall delays keepalives, signing, every answer.
    const servingStall = longestStall(probeFile, servingEpoch + 100, pid);
    const unsynced = agents.filter((a) => a.syncedAt === undefined || a.syncedAt < restartStarted).length;
    const perAgent = agents.filter((a) => a.syncedAt !== undefined && a.syncedAt >= restartStarted).map((a) => a.syncedAt! - restartStarted);
    const perWindow = new Map<number, number>();
    for (const t of opens) perWindow.set(Math.floor((t - restartStarted) / WINDOW_MS), (perWindow.get(Math.floor((t - restartStarted) / WINDOW_MS)) ?? 0) + 1);
    if (process.env['BENCH_STORM_TRACE']) {
      process.stderr.write(`old process exited after ${stoppedMs.toFixed(0)} ms; opens per ${WINDOW_MS} ms: ${[...perWindow].sort((x, y) => x[0] - y[0]).map(([w, n]) => `${w}:${n}`).join(' ')}\n`);
      const synced = new Map<number, number>();
      for (const t of perAgent) synced.set(Math.floor(t / 500), (synced.get(Math.floor(t / 500)) ?? 0) + 1);
      const stalls = fs.readFileSync(probeFile, 'utf8').split('\n').map((l) => l.split(' ').map(Number)).filter(([at, d]) => at! >= restartEpoch && d! >= 200);
      process.stderr.write(`server stalls ≥ 200 ms (ms after the restart began: delay, pid): ${stalls.map(([at, d, p]) => `${at! - restartEpoch}: ${d} (${p})`).join('; ')}\n`);
      process.stderr.write(`synced per 500 ms: ${[...synced].sort((x, y) => x[0] - y[0]).map(([w, n]) => `${w}:${n}`).join(' ')}\n`);
    }
    // The memory held per connected agent, against a bare grpc-js server holding the same agents' streams.
    await sleep(SETTLE_MS);
    const rssSettled = statusMb(pid, 'VmRSS');
    for (const a of agents) a.stop();
    const started = await startBareSyncServer(cluster);
    bare = started.child;
    await sleep(1000);
    const bareIdle = statusMb(bare.pid!, 'VmRSS');
    mirrors.push(...agents.map((a) => a.withServer(started.address)));
    for (const m of mirrors) m.start();
    await Promise.all(mirrors.map((m) => m.synced()));
    await sleep(SETTLE_MS);
    const bareHolding = statusMb(bare.pid!, 'VmRSS');
    const barePerAgent = ((bareHolding - bareIdle) * 1024) / agentCount;
    const meshidPerAgent = ((rssSettled - rssIdle) * 1024) / (agentCount + REAL_AGENTS);
    const failures = new Map<number, number>();
    for (const a of agents) for (const [code, n] of a.failures) failures.set(code, (failures.get(code) ?? 0) + n);
    const failed = [...failures].sort((x, y) => x[0] - y[0]).map(([code, n]) => `${n}×code ${code}`).join(', ') || 'none';
    const who = `${agentCount} simulated agents (${held.toFixed(0)} entries each) + ${REAL_AGENTS} agent processes`;
    return [
      { name: `S attestation of ${agentCount} simulated agents (16 at a time)`, value: agentCount / (attestMs / 1000), unit: 'agents/s' },
      { name: `S cold: ${agentCount} simulated agents open their first Sync stream at once → all hold their entries`, value: coldMs, unit: 'ms' },
      { name: `S cold: server CPU until all ${agentCount} hold their entries`, value: coldCpu, unit: 's' },
      { name: 'S baseline: server restart (SIGTERM → new process healthy)', value: restartMs, unit: 'ms' },
      {
        name: `S restart → ${who} all back in sync${outcome === 'timeout' ? ` (TIMED OUT, ${unsynced} not synced)` : ''}`,
        value: allMs,
        unit: 'ms',
        ratio: allMs / restartMs,
      },
      { name: 'S restart → a simulated agent back in sync, p50', value: percentile(perAgent, 50), unit: 'ms' },
      { name: 'S restart → a simulated agent back in sync, p99', value: percentile(perAgent, 99), unit: 'ms' },
      { name: `S Sync stream opens after the restart: ${opens.length}; busiest 100 ms`, value: Math.max(0, ...perWindow.values()), unit: 'opens' },
      { name: `S failed stream opens after the restart: ${failed}; server CPU until all in sync`, value: cpu, unit: 's' },
      { name: `S server RSS with ${agentCount + REAL_AGENTS} agents' streams open, before the restart`, value: rssBefore, unit: 'MB' },
      { name: 'S server RSS peak (new process, start + storm)', value: rssPeak, unit: 'MB' },
      {
        name: `S baseline: bare grpc-js server (meshid-server's TLS credentials and agent API options) holding ${agentCount} agents' Sync streams: ${bareHolding.toFixed(0)} MB RSS, idle ${bareIdle.toFixed(0)} MB; per agent`,
        value: barePerAgent,
        unit: 'KB',
      },
      {
        name: `S server RSS ${SETTLE_MS / 1000} s after the storm: ${rssSettled.toFixed(0)} MB, idle (before any agent) ${rssIdle.toFixed(0)} MB; per connected agent`,
        value: meshidPerAgent,
        unit: 'KB',
        ratio: meshidPerAgent / barePerAgent,
      },
      { name: 'S server longest event-loop stall (start + storm)', value: stall, unit: 'ms' },
      { name: 'S server longest event-loop stall once the new process is healthy (the storm alone)', value: servingStall, unit: 'ms' },
      // The simulated agents share this process's event loop: a long stall here batches their reconnect timers.
      { name: "S the benchmark's own longest event-loop stall (its agents' TLS handshakes)", value: ownLoop.max / 1e6, unit: 'ms' },
    ];
  } finally {
    for (const a of [...agents, ...mirrors]) a.stop();
    bare?.kill('SIGTERM');
    relay.close();
    await cluster.cleanup();
    if (profileDir === undefined) fs.rmSync(path.dirname(probeFile), { recursive: true, force: true });
  }
}
