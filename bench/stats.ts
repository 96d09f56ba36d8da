/** Percentile of a sample (nearest rank); the sample is sorted in place. */
export function percentile(sample: number[], p: number): number {
  if (sample.length === 0) return Number.NaN;
  sample.sort((a, b) => a - b);
  return sample[Math.min(sample.length - 1, Math.max(0, Math.ceil((p / 100) * sample.length) - 1))]!;
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
 * `baseline` and `subject` measured in alternating slices (each `ms` in total), so that noise drifting over the run
 * (the other processes on these two cores, GC in the client) falls on both alike and their ratio compares like
 * with like. Returns [baseline latencies, subject latencies].
 */
export async function measureAlternating(
  baseline: () => Promise<unknown>,
  subject: () => Promise<unknown>,
  concurrency: number,
  ms: number,
  slices = 8,
): Promise<[number[], number[]]> {
  // Unmeasured first: both servers' hot paths reach the optimizing compiler before anything is counted (without
  // this the baseline's p99 depended on how long the run was).
  await measure(baseline, concurrency, ms / 4);
  await measure(subject, concurrency, ms / 4);
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < slices; i++) {
    a.push(...(await measure(baseline, concurrency, ms / slices)));
    b.push(...(await measure(subject, concurrency, ms / slices)));
  }
  return [a, b];
}
