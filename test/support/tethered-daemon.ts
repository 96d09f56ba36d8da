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
