import type { Logger } from '../log.js';

/** The signals that stop a daemon cleanly. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Set to 1 by `npm start` (src/demo/start.ts), which holds the write end of each daemon's stdin: the daemon stops
 * cleanly, as on SIGTERM, when its stdin ends, which the kernel does for a demo killed with SIGKILL (no handler of its
 * own runs then). The demo honours it too, from whatever starts it holding its stdin (a test, a supervisor), and then
 * stops its daemons. Never set otherwise: a daemon run by an operator or a service manager ignores its stdin, and so
 * does a demo run from a terminal, whose stdin (the terminal) does not end when the shell's job is killed.
 */
export const STOP_ON_STDIN_END_ENV = 'MESHID_STOP_ON_STDIN_END';

/**
 * Where `env` sets STOP_ON_STDIN_END_ENV, calls `onEnd` once stdin ends; otherwise leaves stdin alone. Returns what
 * stops the watch. The process's starter holds the write end: its death, SIGKILL included, is the end.
 */
export function watchStdinEnd(env: NodeJS.ProcessEnv, onEnd: () => void): () => void {
  if (env[STOP_ON_STDIN_END_ENV] !== '1') return () => {};
  process.stdin.once('end', onEnd);
  // Read (and drop) whatever comes, to see the end; not a reason to keep running once stopped otherwise.
  process.stdin.resume();
  (process.stdin as NodeJS.ReadStream & { unref?: () => void }).unref?.();
  return () => {
    process.stdin.off('end', onEnd);
  };
}

/**
 * Resolves with the first SIGINT or SIGTERM, for `run` to stop cleanly (streams ended, socket removed, state saved);
 * or with the end of stdin where `env` sets STOP_ON_STDIN_END_ENV.
 * A second one while stopping finds no handler left and ends the process at once: the operator's way out of a stop
 * that hangs.
 *
 * SIGHUP is logged and otherwise ignored. Node's default for it is to die on the spot, with no clean stop — no log
 * line, the socket left behind, the agent's last changes unsaved — and operators send it expecting a reload
 * (`systemctl reload`, a logrotate postrotate script). There is nothing to reload: a changed config takes a restart,
 * and the log is stderr, which the daemon never reopens.
 */
export function waitForStopSignal(log: Logger, daemon: string, env: NodeJS.ProcessEnv = process.env): { signal: Promise<string>; dispose: () => void } {
  const handlers = new Map<NodeJS.Signals, () => void>();
  let unwatchStdin = (): void => {};
  const signal = new Promise<string>((resolve) => {
    const stop = (name: string): void => {
      for (const [other, handler] of handlers) if (other !== 'SIGHUP') process.off(other, handler);
      unwatchStdin();
      log.info({ signal: name }, 'shutting down');
      resolve(name);
    };
    for (const name of STOP_SIGNALS) {
      const onSignal = (): void => stop(name);
      handlers.set(name, onSignal);
      process.on(name, onSignal);
    }
    unwatchStdin = watchStdinEnd(env, () => stop('stdin closed'));
  });
  const onHangup = (): void => {
    log.warn({ signal: 'SIGHUP' }, `${daemon} has nothing to reload on SIGHUP and keeps running: restart it to apply a changed config`);
  };
  handlers.set('SIGHUP', onHangup);
  process.on('SIGHUP', onHangup);
  return {
    signal,
    dispose: () => {
      for (const [name, handler] of handlers) process.off(name, handler);
      unwatchStdin();
    },
  };
}
