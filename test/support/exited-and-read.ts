import type { ChildProcess } from 'node:child_process';

/** A bound on a grandchild that holds the child's stdout or stderr open after the child exited, not a timing under test. */
export const OUTPUT_END_BOUND_MS = 5000;

/**
 * Resolves with `child`'s exit code (null if a signal ended it) once it has exited and what it wrote is read.
 *
 * 'exit' comes when the kernel reaps the child, which can be before this process has read the last lines still in
 * its stdout and stderr pipes: a test that looks at the output then misses them. The pipes end once read to the end,
 * but never while a grandchild that inherited one lives on (a daemon the child started, a process it forgot): so
 * after 'exit' their end is awaited up to `boundMs`, and the test then goes on with what was read.
 */
export async function exitedAndRead(child: ChildProcess, boundMs = OUTPUT_END_BOUND_MS): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
  await outputRead(child, boundMs);
  return child.exitCode;
}

/**
 * Resolves once `child`'s stdout and stderr pipes (those it has) have ended, or after `boundMs`: for a child that
 * exited, what it wrote is then read, unless a grandchild holds a pipe open.
 */
export async function outputRead(child: ChildProcess, boundMs = OUTPUT_END_BOUND_MS): Promise<void> {
  const open = [child.stdout, child.stderr].filter((s) => s !== null && !s.destroyed);
  if (open.length === 0) return;
  let bound: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      // A listener, not events.once(), which would reject on the stream's 'error': a stream that erred has ended too.
      Promise.all(open.map((s) => new Promise((resolve) => s!.once('close', resolve)))),
      new Promise<void>((resolve) => (bound = setTimeout(resolve, boundMs))),
    ]);
  } finally {
    clearTimeout(bound);
  }
}
