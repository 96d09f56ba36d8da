import v8 from 'node:v8';

/**
 * How far V8 lets the old generation grow past its live size before the next full GC: a fixed 1.5 instead of V8's
 * own choice, for the agent (bench/HISTORY.md, P3).
 *
 * Why: after an idle period V8's memory reducer collects everything and sets the next limit at ~1.1× the live heap
 * (~2 MB of headroom at 10,000 SVIDs). A rotation pushed to 1,000 SDS streams promotes ~1 MB of write buffers, so
 * the second rotation after the idle period paid a full GC in its push (~30 ms of a 100 ms budget). With 1.5 the
 * headroom is ~17 MB, and full GCs come when the agent is otherwise quiet. The old generation's headroom is not where
 * the idle RSS goes: V8's memory reducer is not promised to run once the agent is quiet (the agent's own quiet GC,
 * native-heap.ts, stands in for it), and what P5's high runs keep is the young generation at its burst size
 * (bench/HISTORY.md, the forty-fourth session, P5's two modes). During bursts V8 collects somewhat sooner than its
 * dynamic factor (up to 4×) would.
 *
 * heap_growing_percent is read at every limit computation, so setting it after start-up takes effect at the next GC.
 */
export const OLD_GENERATION_GROWTH_PERCENT = 50;

export function setOldGenerationGrowth(): void {
  v8.setFlagsFromString(`--heap-growing-percent=${OLD_GENERATION_GROWTH_PERCENT}`);
}
