import { spawn } from 'node:child_process';
import { STOP_ON_STDIN_END_ENV } from '../../src/common/cli/stop-signal.js';

/**
 * The stdio and environment for a daemon a test starts (`meshid-server run`, `meshid-agent run`), so that the daemon
 * stops as soon as the test file's process ends, however it ends.
 *
 * node --test ends a file that passes --test-timeout with a SIGTERM to the file's process alone (its runner spawns each
 * file with the file's abort signal, whose kill signal is SIGTERM). The file's process has no handler for it, so no
 * `after` hook and no 'exit' listener runs, and its daemons would serve on, holding their temp dirs, sockets and CPU,
 * until scripts/run-tests.mjs kills the run's whole process group at the very end. Here the daemon's stdin is a pipe
 * whose write end only the test's process holds (Node opens it close-on-exec), and STOP_ON_STDIN_END_ENV tells the
 * daemon to stop, as on SIGTERM, when its stdin ends: the kernel ends it when the test's process dies, SIGKILL
 * included. stdout and stderr are pipes for the test to read.
 */
export function tetheredDaemon(env: NodeJS.ProcessEnv): { stdio: ['pipe', 'pipe', 'pipe']; env: NodeJS.ProcessEnv } {
  return { stdio: ['pipe', 'pipe', 'pipe'], env: { ...env, [STOP_ON_STDIN_END_ENV]: '1' } };
}

/** tetheredDaemon's, with stdout and stderr both the open file `fd` (such as /dev/full) instead of pipes. */
export function tetheredDaemonWritingTo(fd: number, env: NodeJS.ProcessEnv): { stdio: ['pipe', number, number]; env: NodeJS.ProcessEnv } {
  return { stdio: ['pipe', fd, fd], env: tetheredDaemon(env).env };
}

/**
 * The tether for a child in a process group of its own (spawned detached, as a shell runs a job), which neither the
 * runner's timeout nor scripts/run-tests.mjs's kill of the run's group reaches: a watcher process, in the test's
 * group, whose stdin only the test's process holds, sends SIGTERM to the group `pgid` when that stdin ends, that is
 * when the test's process dies, SIGKILL included. `release()` ends the watch without a signal: call it once the test
 * stopped the group itself (and before the file ends: the watcher keeps the test's process alive until then).
 */
export function tetherGroup(pgid: number): { release: () => void } {
  const watch = `process.stdin.on('end', () => { try { process.kill(-${pgid}, 'SIGTERM'); } catch {} }); process.stdin.resume();`;
  const watcher = spawn(process.execPath, ['-e', watch], { stdio: ['pipe', 'ignore', 'ignore'] });
  return {
    release: () => {
      if (watcher.exitCode === null && watcher.signalCode === null) watcher.kill('SIGKILL');
    },
  };
}
