import { StateWriter } from '../../src/agent/storage/state-writer.js';
import type { FakeClock } from '../../src/common/clock.js';
import { silentLogger, type Logger } from '../../src/common/log.js';

/**
 * A StateWriter on `clock` whose write records the clock time of each attempt in `attempts` and throws
 * `new Error(error)` while `failing()` says so (always, by default): a disk that refuses the agent's state.
 */
export function failingStateWriter(
  clock: FakeClock,
  o: { error: string; failing?: () => boolean; delayMs?: number; log?: Logger },
): { writer: StateWriter; attempts: number[] } {
  const attempts: number[] = [];
  const writer = new StateWriter({
    clock,
    log: o.log ?? silentLogger(),
    ...(o.delayMs !== undefined ? { delayMs: o.delayMs } : {}),
    write: () => {
      attempts.push(clock.now());
      if (o.failing?.() ?? true) throw new Error(o.error);
    },
  });
  return { writer, attempts };
}
