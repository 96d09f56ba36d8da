import type { ChildProcess } from 'node:child_process';

/**
 * Resolves at `child`'s next write (stdout or stderr) or its end, or after `ms` at the latest: the pause of a
 * readiness poll that looks again as soon as the process says something (a daemon logs the step that made it ready).
 */
export function nextOutputOr(child: ChildProcess, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', done);
      child.stderr?.off('data', done);
      child.off('exit', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    child.stdout?.on('data', done);
    child.stderr?.on('data', done);
    child.on('exit', done);
  });
}
