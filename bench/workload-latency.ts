/**
 * P2 — Workload API FetchX509SVID first-message latency (p50/p99) with 1 and 64 concurrent clients, against a bare
 * grpc-js unary echo over a Unix socket in the same run. P4 — entry created with the admin API → SVID delivered on
 * an open FetchX509SVID stream. P6 — agent start → serving cached SVIDs with the server down.
 * Real server and agent processes; loopback and Unix sockets only.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../src/common/grpc/proto.js';
import { serviceClient } from '../src/common/grpc/service.js';
import { packageRoot } from '../src/common/paths.js';
import { connectWorkloadApi } from '../src/agent/cli/workload-client.js';
import { startClusterWithAgent } from '../test/support/cluster.js';
import { timeToServeFromCache } from './agent-restart.js';
import { measureAlternating, percentile } from './stats.js';
import type { BenchResult } from './report.js';

const uid = process.getuid!();
const P4_ROUNDS = 100;
const P4_WARMUP = 3;

/**
 * Clients round-robin, each replaced after 500 calls: fetch-then-cancel sends an RST_STREAM per call, and Node's
 * HTTP/2 rapid-reset protection (nghttp2: burst 1,000, then ~33/s) closes a connection that cancels faster.
 */
class ClientPool<C extends { close(): void }> {
  private clients: Array<{ c: C; uses: number }>;
  private i = 0;
  private retired: C[] = [];

  constructor(private readonly make: () => C, size: number) {
    this.clients = Array.from({ length: size }, () => ({ c: make(), uses: 0 }));
  }

  next(): C {
    const slot = this.clients[this.i++ % this.clients.length]!;
    if (++slot.uses > 500) {
      this.retired.push(slot.c);
      // Closed a rotation later, when their calls have long finished. Kept to the end, they piled up at one per 500
      // calls (at 64 clients on the fifth session's machine ~150 idle connections on the agent, more on the echo
      // server), and with a longer BENCH_SECONDS would pass the agent's 1,024 connections per uid, where it closes
      // new ones at accept.
      if (this.retired.length > this.clients.length) this.retired.shift()!.close();
      slot.c = this.make();
      slot.uses = 1;
    }
    return slot.c;
  }

  close(): void {
    for (const c of [...this.retired, ...this.clients.map((s) => s.c)]) c.close();
  }
}

/**
 * The structural floor for FetchX509SVID: grpc.health.v1 Watch on the bare echo server, a server stream read the
 * way fetchX509Svid reads one (deadline, one metadata header, first message, then cancel). The gap between it and
 * the unary baseline is grpc-js's cost for the call's shape, which no server can avoid.
 */
class BareStreamClient {
  private readonly client: grpc.Client & { Watch: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<unknown> };

  constructor(socket: string) {
    const Ctor = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
    this.client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as typeof this.client;
  }

  first(): Promise<unknown> {
    const metadata = new grpc.Metadata();
    metadata.set('workload.spiffe.io', 'true');
    const call = this.client.Watch({ service: '' }, metadata, { deadline: Date.now() + 5_000 });
    return new Promise((resolve, reject) => {
      call.once('data', (message) => {
        call.cancel();
        resolve(message);
      });
      call.on('error', (err: grpc.ServiceError) => {
        if (err.code !== grpc.status.CANCELLED) reject(err);
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

async function startEcho(socket: string): Promise<() => void> {
  const child = spawn(process.execPath, [path.join(packageRoot, 'dist/bench/echo-server.js'), socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`echo server exited ${code}`)));
  });
  return () => child.kill('SIGTERM');
}

export async function benchWorkload(seconds: number): Promise<BenchResult[]> {
  const { cluster, agent } = await startClusterWithAgent('meshid-bench-wl-', ['spiffe://example.org/bench/p2']);
  const results: BenchResult[] = [];
  try {
    const warm = agent.client();
    await warm.fetchX509Svid();
    warm.close();

    const stopEcho = await startEcho(path.join(cluster.dir, 'echo.sock'));
    try {
      for (const concurrency of [1, 64]) {
        const echoSocket = path.join(cluster.dir, 'echo.sock');
        const size = Math.min(concurrency, 8);
        const echo = new ClientPool(() => connectWorkloadApi(echoSocket, { ownConnection: true }), size);
        const bare = new ClientPool(() => new BareStreamClient(echoSocket), size);
        const wl = new ClientPool(() => connectWorkloadApi(agent.socketPath, { ownConnection: true }), size);
        const [base, floor, fetch] = await measureAlternating(
          [() => echo.next().health(), () => bare.next().first(), () => wl.next().fetchX509Svid()],
          concurrency,
          // 1.5 × BENCH_SECONDS each: a p99 over the default 4 s window moved by ±0.3× from run to run.
          seconds * 1500,
        );
        echo.close();
        bare.close();
        wl.close();
        for (const p of [50, 99]) {
          const b = percentile(base!, p);
          const s = percentile(floor!, p);
          const f = percentile(fetch!, p);
          results.push({ name: `P2 baseline: bare grpc-js unary echo p${p}, ${concurrency} client(s)`, value: b, unit: 'ms' });
          results.push({ name: `P2 bare grpc-js server stream, first message p${p}, ${concurrency} client(s)`, value: s, unit: 'ms', ratio: s / b });
          results.push({ name: `P2 FetchX509SVID first message p${p}, ${concurrency} client(s)`, value: f, unit: 'ms', ratio: f / b, ...(p === 99 ? { target: 'ratio ≤ 1.5' } : {}) });
        }
      }
    } finally {
      stopEcho();
    }

    // P4: each round opens a stream, creates an entry matching the same uid, and times the message that carries its
    // SPIFFE ID. By ID, not by a count of SVIDs: the previous round's entry, deleted just before, may still be
    // withdrawn on this stream, and a count would then take the withdrawal and the addition for no change. A p99
    // needs 100 samples (nearest rank: below that it is the maximum); the first rounds, on a server that has not
    // created an entry since start, are not counted.
    const p4: number[] = [];
    for (let round = -P4_WARMUP; round < P4_ROUNDS; round++) {
      const spiffeId = `spiffe://example.org/bench/p4-${round + P4_WARMUP}`;
      const client = agent.client();
      // A deadline on the whole watch: an agent that never delivers fails the run instead of hanging it.
      const watch = client.watchX509Svids({ deadline: Date.now() + 20_000 });
      let id: string;
      try {
        await watch.next();
        const started = performance.now();
        id = await cluster.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`] });
        for (;;) {
          const next = await watch.next();
          if (next.done === true) throw new Error('stream ended');
          if ((next.value.svids ?? []).some((s) => s.spiffe_id === spiffeId)) break;
        }
        if (round >= 0) p4.push(performance.now() - started);
      } finally {
        watch.cancel();
        client.close();
      }
      await cluster.deleteEntry(id);
    }
    results.push({ name: `P4 entry create → SVID on an open stream p50 (${P4_ROUNDS} entries)`, value: percentile(p4, 50), unit: 'ms' });
    results.push({ name: `P4 entry create → SVID on an open stream p99 (${P4_ROUNDS} entries)`, value: percentile(p4, 99), unit: 'ms', target: '< 1000 ms' });

    // P6: stop the server and the agent, start the agent again, time until a workload gets its SVID.
    await agent.stop('SIGTERM');
    await cluster.server.stop();
    const p6: number[] = [];
    for (let round = 0; round < 5; round++) p6.push(await timeToServeFromCache(cluster, agent.dataDir));
    results.push({ name: 'P6 agent start → serving cached SVIDs, server down (median of 5)', value: percentile(p6, 50), unit: 'ms', target: '< 500 ms' });
    return results;
  } finally {
    await cluster.cleanup().catch(() => undefined);
  }
}
