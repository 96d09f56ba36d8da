import type { FakeClock } from '../../src/common/clock.js';

/**
 * An agent retries when the server said it may (or at its backoff), on its clock: moves `clock` on a second at a
 * time (up to 25 s), giving the agent 200 ms of real time at each, until `done`; then up to 10 s more of real time
 * (a retry already due, coming back over the network on a loaded machine).
 */
export async function advanceUntil(clock: FakeClock, done: () => boolean): Promise<void> {
  for (let s = 0; s < 25 && !done(); s++) {
    for (let i = 0; i < 8 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
    if (!done()) clock.advance(1000);
  }
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
}
