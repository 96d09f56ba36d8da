import { spawn } from 'node:child_process';
import { KILL_AT_POINT_PRELOAD } from './killed-server.js';
import { SERVER_MAIN, type CliResult } from './server-process.js';
import { tetheredDaemon } from './tethered-daemon.js';

export interface PausedProcess {
  /** Resolves once the process says it stopped at `point`; rejects if it ended first. */
  paused: (point: string) => Promise<void>;
  /** Resolves once the process printed `text` (stdout or stderr); rejects, with what it printed, if it ended first. */
  printed: (text: string) => Promise<void>;
  resume: () => void;
  kill: (signal: NodeJS.Signals) => void;
  done: Promise<CliResult>;
}

/**
 * `meshid-server <args>` (a subcommand first) that stops at `points` of test/support/kill-at-point
 * (MESHID_TEST_PAUSE_AT) until resumed, so a test can run another process in between.
 */
export function serverPausedAt(args: string[], points: string[], env: NodeJS.ProcessEnv = {}): PausedProcess {
  // Tethered: a `run` stops once the test's process is gone (a pause it is in then reads the end of stdin and goes on).
  const child = spawn(
    process.execPath,
    [SERVER_MAIN, ...args],
    tetheredDaemon({ ...process.env, ...env, NODE_OPTIONS: `--import ${KILL_AT_POINT_PRELOAD}`, MESHID_TEST_PAUSE_AT: points.join(',') }),
  );
  let out = '';
  let err = '';
  const waiting: Array<() => void> = [];
  const wakeAll = () => {
    for (const wake of waiting.splice(0)) wake();
  };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    wakeAll();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    wakeAll();
  });
  child.on('exit', wakeAll);
  // A resume racing the process's end (killed, or failed, while the test wrote) fails with EPIPE here; unheard, it
  // would end the whole test file. How the process ended is `done`'s to tell.
  child.stdin.on('error', () => {});
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
  const waitFor = async (seen: () => boolean, what: string): Promise<void> => {
    while (!seen()) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`meshid-server ${args[0]} ended before ${what}: ${err}${out}`);
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  return {
    paused: (point) => waitFor(() => err.includes(`paused at ${point}\n`), point),
    printed: (text) => waitFor(() => out.includes(text) || err.includes(text), `printing "${text}"`),
    // Once it ended, there is nobody to resume (a write to its closed stdin would fail with EPIPE).
    resume: () => {
      if (child.exitCode === null && child.signalCode === null) child.stdin.write('x');
    },
    kill: (signal) => child.kill(signal),
    done,
  };
}
