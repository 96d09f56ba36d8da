/**
 * P6 with a full cache, quickly and A/B: the full-cache line in sds-push.ts needs ~5 minutes of P3/P5 before its one
 * restart. This builds a 10,001-SVID agent data dir once, then restarts agents against fresh copies of it with the
 * server down, alternating between builds, so that two builds are compared on the same machine and state.
 *
 *   node dist/bench/restart-from-cache.js prepare DIR [entries]
 *   node dist/bench/restart-from-cache.js run DIR ROUNDS [AGENT_MAIN ...]   (default: this build's agent)
 *   node dist/bench/restart-from-cache.js load DIR   (this build's AgentStore.loadState alone, in this process)
 *
 * `run` prints one line per restart and the median and range per build. The prepared SVIDs expire with their TTL
 * (the server's default): prepare again after that, or every restart fails to serve.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { AgentStore } from '../src/agent/storage/agent-store.js';
import { silentLogger } from '../src/common/log.js';
import { AGENT_MAIN, startClusterWithAgent } from '../test/support/cluster.js';
import { percentile } from './stats.js';
import { createIdleEntries, signingSettled } from './full-agent.js';
import { untilServed } from './agent-restart.js';

async function prepare(dir: string, entries: number): Promise<void> {
  const { cluster, agent } = await startClusterWithAgent('meshid-bench-restart-', ['spiffe://example.org/bench/envoy']);
  try {
    await createIdleEntries(cluster, entries);
    await signingSettled(() => agent.output());
    await agent.stop('SIGTERM');
    await cluster.server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    fs.cpSync(agent.dataDir, path.join(dir, 'data'), { recursive: true });
    fs.copyFileSync(cluster.bundleFile, path.join(dir, 'bundle.pem'));
    fs.rmSync(path.join(dir, 'data', 'agent.lock'), { force: true });
    process.stdout.write(`prepared ${dir}: ${fs.readdirSync(path.join(dir, 'data')).join(', ')}\n`);
  } finally {
    await cluster.cleanup().catch(() => undefined);
  }
}

/** A loopback address nothing listens on: the server is down. */
async function deadAddress(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return `127.0.0.1:${port}`;
}

/** Extra node flags for the agent, e.g. MESHID_BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile a start. */
const nodeArgs = (process.env['MESHID_BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');

/** CPU time (user + system, ms; 10 ms resolution) a process has used so far. */
function cpuMs(pid: number): number {
  // Fields after the command name, which sits in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/**
 * One restart of `main` on a fresh copy of the prepared data dir: ms from spawn to the first FetchX509SVID served,
 * and the CPU the agent used by then (steadier than wall time when other work shares the cores).
 */
async function restartOnce(dir: string, main: string, server: string): Promise<{ ms: number; cpu: number }> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-restart-'));
  try {
    fs.chmodSync(work, 0o700);
    fs.cpSync(path.join(dir, 'data'), path.join(work, 'data'), { recursive: true });
    const socketPath = path.join(work, 'api.sock');
    const started = performance.now();
    const child = spawn(
      process.execPath,
      [...nodeArgs, main, 'run', '--server-address', server, '--socket-path', socketPath, '--data-dir', path.join(work, 'data'), '--trust-bundle', path.join(dir, 'bundle.pem')],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHID_LOG_LEVEL: 'debug' } },
    );
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    let exitedEarly = false;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve((exitedEarly = true) && undefined)));
    try {
      await untilServed(socketPath, () => {
        if (exitedEarly) throw new Error(`the agent exited: ${stderr}`);
      });
      return { ms: performance.now() - started, cpu: cpuMs(child.pid!) };
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function run(dir: string, rounds: number, mains: readonly string[]): Promise<void> {
  const server = await deadAddress();
  const times = mains.map(() => [] as number[]);
  const cpus = mains.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    // Alternating, so that load from anything else on the machine falls on every build alike.
    for (const [i, main] of mains.entries()) {
      const { ms, cpu } = await restartOnce(dir, main, server);
      times[i]!.push(ms);
      cpus[i]!.push(cpu);
      process.stdout.write(`round ${round + 1} ${main}: ${ms.toFixed(0)} ms (CPU ${cpu.toFixed(0)} ms)\n`);
    }
  }
  for (const [i, main] of mains.entries()) {
    const t = times[i]!;
    const c = cpus[i]!;
    process.stdout.write(
      `${main}: median ${percentile(t, 50).toFixed(0)} ms, range ${Math.min(...t).toFixed(0)}–${Math.max(...t).toFixed(0)} ms; ` +
        `CPU median ${percentile(c, 50).toFixed(0)} ms (${t.length} restarts)\n`,
    );
  }
}

/** The state load alone, as the agent does it at start: ms of loadState, and of GC pauses meanwhile. */
async function loadOnce(dir: string): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-restart-'));
  try {
    fs.chmodSync(work, 0o700);
    fs.cpSync(path.join(dir, 'data'), path.join(work, 'data'), { recursive: true });
    const store = AgentStore.open(path.join(work, 'data'), silentLogger());
    let gc = 0;
    const observer = new PerformanceObserver((list) => list.getEntries().forEach((e) => (gc += e.duration)));
    observer.observe({ entryTypes: ['gc'] });
    const cpu = process.cpuUsage();
    const started = performance.now();
    const state = store.loadState(Date.now());
    const elapsed = performance.now() - started;
    const used = process.cpuUsage(cpu);
    await new Promise((r) => setTimeout(r, 10));
    observer.disconnect();
    process.stdout.write(`loadState: ${elapsed.toFixed(1)} ms (CPU ${((used.user + used.system) / 1000).toFixed(1)} ms, GC ${gc.toFixed(1)} ms), ${state?.svids.length ?? 0} SVIDs\n`);
    store.close();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

const [command, dir, arg, ...rest] = process.argv.slice(2);
if (command === 'prepare' && dir !== undefined) {
  await prepare(path.resolve(dir), arg === undefined ? 10_000 : Number(arg));
} else if (command === 'run' && dir !== undefined) {
  await run(path.resolve(dir), arg === undefined ? 5 : Number(arg), rest.length > 0 ? rest.map((m) => path.resolve(m)) : [AGENT_MAIN]);
} else if (command === 'load' && dir !== undefined) {
  await loadOnce(path.resolve(dir));
} else {
  process.stderr.write('usage: restart-from-cache.js prepare DIR [entries] | run DIR ROUNDS [AGENT_MAIN ...] | load DIR\n');
  process.exitCode = 2;
}
