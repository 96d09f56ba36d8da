/**
 * P3's baseline: the bare grpc-js SDS server (sds-push-server.ts) in its own process, holding the same number of
 * streams over the same number of connections of the same client (SidecarStream, ACKing like Envoy) as the agent, and
 * pushing one pre-encoded message of the agent's push size to all of them on a trigger.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { packageRoot } from '../src/common/paths.js';
import { connectSidecars, SidecarStream } from './sidecar-stream.js';

/** Extra node flags for the bare server, as MESHID_BENCH_AGENT_NODE_ARGS for the agent (e.g. '--cpu-prof --cpu-prof-dir=…'). */
const bareNodeArgs = (process.env['MESHID_BENCH_BARE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');

export interface BarePush {
  /** Per stream, ms from the server's trigger to the new message's arrival. */
  readonly latencies: number[];
  /** The server's CPU (user + system, process.cpuUsage) from the trigger to the last stream's ACK decoded. */
  readonly cpuMs: number;
}

export class BarePushServer {
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private readonly streams: SidecarStream[] = [];
  private readonly clients: ReturnType<typeof connectSidecars>[] = [];

  private constructor(private readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.waiter?.();
    });
  }

  /** Starts the server for messages of `messageBytes` and opens `streams` streams over `connections` connections. */
  static async start(socket: string, messageBytes: number, streams: number, connections: number): Promise<BarePushServer> {
    const child = spawn(process.execPath, [...bareNodeArgs, path.join(packageRoot, 'dist/bench/sds-push-server.js'), socket, String(messageBytes)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const server = new BarePushServer(child);
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`the bare SDS push server exited (${code})`))));
    exited.catch(() => undefined);
    await Promise.race([server.line((l) => l === 'ready'), exited]);
    for (let i = 0; i < connections; i++) server.clients.push(connectSidecars(socket));
    const firsts: Array<Promise<number>> = [];
    for (let i = 0; i < streams; i++) {
      const s = new SidecarStream(server.clients[i % connections]!, `bare-${i}`, ['default']);
      server.streams.push(s);
      firsts.push(s.nextVersion());
    }
    await Promise.race([Promise.all(firsts), exited]);
    return server;
  }

  /** One push of round `round` (unique per push, not '0'): latencies of every stream and the server's CPU. */
  async push(round: number): Promise<BarePush> {
    const arrivals = this.streams.map((s) => s.nextVersion());
    this.child.stdin!.write(`push ${round}\n`);
    const pushed = (await this.line((l) => l.startsWith(`pushed ${round} `))).split(' ');
    const at = Number(pushed[2]);
    if (Number(pushed[3]) !== this.streams.length) throw new Error(`the bare server pushed to ${pushed[3]} streams, not ${this.streams.length}`);
    const arrived = await Promise.all(arrivals);
    const acked = await this.line((l) => l.startsWith(`acked ${round} `));
    return { latencies: arrived.map((t) => performance.timeOrigin + t - at), cpuMs: Number(acked.split(' ')[2]) };
  }

  /** The server's process id (for /proc). */
  get pid(): number {
    return this.child.pid!;
  }

  stop(): void {
    for (const s of this.streams) s.cancel();
    for (const c of this.clients) c.close();
    this.child.kill('SIGTERM');
  }

  /** The first line from the server (since the last one taken) that `match` accepts; the lines before it are dropped. */
  private async line(match: (line: string) => boolean): Promise<string> {
    for (;;) {
      const at = this.lines.findIndex(match);
      if (at >= 0) return this.lines.splice(0, at + 1)[at]!;
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }
}
