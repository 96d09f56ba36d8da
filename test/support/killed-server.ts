import { spawn } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { SERVER_MAIN } from './server-process.js';
import { tetheredDaemon } from './tethered-daemon.js';

/** The preload that kills a process at a named point (test/support/kill-at-point.ts). */
export const KILL_AT_POINT_PRELOAD = path.join(packageRoot, 'dist/test/support/kill-at-point.js');

/**
 * `meshid-server run` on `dir` (its data dir `dir/data`, its admin socket in `dir/admin`) that kills itself at `point`
 * of test/support/kill-at-point; resolves with its end. `datacenters` and `env` as the run that follows will use.
 */
export function runServerKilledAt(
  dir: string,
  point: string,
  datacenters: readonly string[] = ['east', 'west'],
  env: NodeJS.ProcessEnv = {},
): Promise<{ signal: NodeJS.Signals | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [SERVER_MAIN, 'run', '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'data'), '--bind-address', '127.0.0.1:0',
        '--admin-socket', path.join(dir, 'admin', 'admin.sock'), ...datacenters.flatMap((dc) => ['--datacenter', dc])],
      tetheredDaemon({ ...process.env, ...env, NODE_OPTIONS: `--import ${KILL_AT_POINT_PRELOAD}`, MESHID_TEST_KILL_AT: point }),
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // A bound on a server that did not reach the point and serves instead, not a timing under test.
    const bound = setTimeout(() => child.kill('SIGTERM'), 20_000);
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(bound);
      resolve({ signal, output });
    });
  });
}
