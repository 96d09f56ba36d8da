import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { exitedAndRead } from './exited-and-read.js';
import { serverReady } from './server-ready.js';
import { tetheredDaemon } from './tethered-daemon.js';

/** The server executable as shipped: the bundle package.json's bin names (scripts/bundle.mjs). */
export const SERVER_MAIN = path.join(packageRoot, 'dist/bin/meshid-server.mjs');

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

/** Runs a node entry point to completion and collects its output; as another uid and gid with `ids`. */
export function runNode(main: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = process.cwd(), ids?: { uid: number; gid: number }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...ids });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

/**
 * `meshid-server run` (or `main`'s `run`) expected to refuse to start. A daemon that serves instead is killed after a
 * bound and answers code null, so the test fails on its exit code, naming what it printed, rather than waiting on a
 * process that never ends until the runner's timeout hides why.
 */
export function runRefused(args: string[], env: NodeJS.ProcessEnv = {}, main = SERVER_MAIN): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, 'run', ...args], tetheredDaemon({ ...process.env, ...env }));
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // A bound on a daemon that wrongly started, not a timing under test.
    const bound = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(bound);
      resolve({ code, out, err });
    });
  });
}

export interface ServerProcess {
  child: ChildProcess;
  adminSocket: string;
  dataDir: string;
  output: () => string;
  /** The agent API port the server bound (from its startup log line). */
  port: () => number;
  cli: (args: string[]) => Promise<CliResult>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * Starts `meshid-server run` in `dir` for example.org, unless `extra` names another trust domain (`env` added to
 * ours), and waits until its admin socket answers health checks. `main`: another build's executable (an installed
 * tarball's), which the returned `cli` runs too.
 */
export async function startServerProcess(
  dir: string,
  extra: string[] = ['--datacenter', 'east', '--datacenter', 'west'],
  env: NodeJS.ProcessEnv = {},
  main = SERVER_MAIN,
): Promise<ServerProcess> {
  const adminSocket = path.join(dir, 'admin', 'admin.sock');
  const dataDir = path.join(dir, 'data');
  const child = spawn(
    process.execPath,
    [main, 'run', ...(extra.includes('--trust-domain') ? [] : ['--trust-domain', 'example.org']), '--data-dir', dataDir, '--bind-address', '127.0.0.1:0', '--admin-socket', adminSocket, ...extra],
    tetheredDaemon({ ...process.env, MESHID_LOG_LEVEL: 'info', ...env }),
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = exitedAndRead(child);
  const cli = (args: string[]): Promise<CliResult> => runNode(main, [...args, '--admin-socket', adminSocket]);
  await serverReady(child, adminSocket, () => output);
  return {
    child,
    adminSocket,
    dataDir,
    output: () => output,
    port: () => {
      const m = /"agentApi":"[^"]*:(\d+)"/.exec(output);
      if (!m) throw new Error(`no agent API port in the server log:\n${output}`);
      return Number(m[1]);
    },
    cli,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
