/** Percentile of a sample (nearest rank); the sample is sorted in place. */
export function percentile(sample: number[], p: number): number {
  if (sample.length === 0) return Number.NaN;
  sample.sort((a, b) => a - b);
  // The rank is ceil(p·n/100); p/100 is inexact in binary (99.9/100·1000 = 999.0000000000001), which ceil would
  // push one rank too high, so a product within rounding error of an integer counts as that integer.
  const exact = (p * sample.length) / 100;
  const rank = Math.abs(exact - Math.round(exact)) < 1e-9 ? Math.round(exact) : Math.ceil(exact);
  return sample[Math.min(sample.length - 1, Math.max(0, rank - 1))]!;
}

/** Runs `op` from `concurrency` workers until `ms` passes (or `maxOps` ops); returns each op's latency in ms. */
export async function measure(op: () => Promise<unknown>, concurrency: number, ms: number, maxOps = 200_000): Promise<number[]> {
  const latencies: number[] = [];
  const until = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until && latencies.length < maxOps) {
        const start = performance.now();
        await op();
        latencies.push(performance.now() - start);
      }
    }),
  );
  return latencies;
}

/**
 * Several operations measured in alternating slices (each `ms` in total), so that noise drifting over the run (the
 * other processes on these two cores, GC in the client) falls on all alike and their ratios compare like with like.
 * Returns each operation's latencies, in the order given.
 */
export async function measureAlternating(ops: ReadonlyArray<() => Promise<unknown>>, concurrency: number, ms: number, slices = 8): Promise<number[][]> {
  // Unmeasured first: every server's hot path reaches the optimizing compiler before anything is counted (without
  // this the baseline's p99 depended on how long the run was).
  for (const op of ops) await measure(op, concurrency, ms / 4);
  const latencies = ops.map((): number[] => []);
  for (let i = 0; i < slices; i++) {
    for (const [k, op] of ops.entries()) latencies[k]!.push(...(await measure(op, concurrency, ms / slices)));
  }
  return latencies;
}
