import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A synchronous full (mark-compact) GC, or undefined where V8 will not hand one out. Node offers no API for it short
 * of --expose-gc on the command line, which the agent's users start it without; setting the flag at run time makes
 * V8 install `gc` in contexts created afterwards, so it is fetched from a fresh context of its own and the agent's
 * global scope gets no `gc`. Called once, when first needed (a context costs ~1 ms and some memory), not at start.
 */
export function fullGc(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof gc === 'function' ? () => void (gc as () => unknown)() : undefined;
  } catch {
    return undefined;
  }
}
