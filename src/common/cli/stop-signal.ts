import type { Logger } from '../log.js';

/** The signals that stop a daemon cleanly. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Resolves with the first SIGINT or SIGTERM, for `run` to stop cleanly (streams ended, socket removed, state saved).
 * A second one while stopping finds no handler left and ends the process at once: the operator's way out of a stop
 * that hangs.
 *
 * SIGHUP is logged and otherwise ignored. Node's default for it is to die on the spot, with no clean stop — no log
 * line, the socket left behind, the agent's last changes unsaved — and operators send it expecting a reload
 * (`systemctl reload`, a logrotate postrotate script). There is nothing to reload: a changed config takes a restart,
 * and the log is stderr, which the daemon never reopens.
 */
export function waitForStopSignal(log: Logger, daemon: string): { signal: Promise<string>; dispose: () => void } {
  const handlers = new Map<NodeJS.Signals, () => void>();
  const signal = new Promise<string>((resolve) => {
    for (const name of STOP_SIGNALS) {
      const onSignal = (): void => {
        for (const [other, handler] of handlers) if (other !== 'SIGHUP') process.off(other, handler);
        log.info({ signal: name }, 'shutting down');
        resolve(name);
      };
      handlers.set(name, onSignal);
      process.on(name, onSignal);
    }
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
    },
  };
}
