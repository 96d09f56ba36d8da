import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { packageRoot } from '../../src/common/paths.js';

/**
 * The thread-relay workload (test/support/thread-relay.c): a C program whose connection to the agent is made by a
 * worker thread, optionally after its main thread has exited. Node cannot take that shape (its main thread is the
 * event loop), so the tests compile the program with the system's C compiler.
 */

const SOURCE = path.join(packageRoot, 'test/support/thread-relay.c');

/** False, or why the thread-relay tests are skipped: there is no C compiler. */
export const threadRelaySkip: string | false =
  spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'needs a C compiler (cc) to build test/support/thread-relay.c: apt-get install gcc';

/** Compiles the relay to `output` (mode 0755). */
export function buildThreadRelay(output: string): void {
  const r = spawnSync('cc', ['-O1', '-pthread', '-o', output, SOURCE], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed (${r.status}): ${r.stderr}`);
  fs.chmodSync(output, 0o755);
}

export type RelayShape = 'main-exits' | 'main-stays';

export class ThreadRelay {
  private readonly child: ChildProcess;
  private readonly exited: Promise<unknown>;

  /**
   * Runs `binary`, which connects to `agentSocket` from a worker thread and relays the one connection it accepts on
   * `listenSocket`. Call ready() before connecting to `listenSocket`.
   */
  constructor(
    binary: string,
    agentSocket: string,
    readonly listenSocket: string,
    private readonly shape: RelayShape,
  ) {
    // stdin: a pipe only this process holds (Node opens its end close-on-exec), whose end stops the relay should this
    // test file die before stop().
    this.child = spawn(binary, [agentSocket, listenSocket, shape], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = once(this.child, 'exit');
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Resolves once the relay is connected to the agent and listening, and, for 'main-exits', the kernel shows its
   * thread-group leader as a zombie (the state the test is about). Rejects if the relay exits first.
   */
  async ready(): Promise<void> {
    let out = '';
    let err = '';
    this.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const printed = new Promise<void>((resolve) =>
      this.child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready\n')) resolve();
      }),
    );
    const died = this.exited.then(() => Promise.reject(new Error(`thread-relay exited before it was ready: ${err}`)));
    await Promise.race([printed, died]);
    if (this.shape === 'main-stays') return;
    // pthread_join() in the worker returns as the main thread exits; the kernel marks the leader a zombie just after.
    for (let i = 0; this.leaderState() !== 'Z'; i++) {
      if (i === 1000) throw new Error(`the relay's main thread is not a zombie: State ${this.leaderState()}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** The thread-group leader's state letter from /proc/<pid>/status. */
  leaderState(): string | undefined {
    return /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${this.pid}/status`, 'utf8'))?.[1];
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
