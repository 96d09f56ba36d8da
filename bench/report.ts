export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** Ratio against the baseline measured in the same run. */
  ratio?: number;
  target?: string;
}

/**
 * `name: value unit (ratio X vs baseline)`, the ratio part only where there is a baseline. A target goes in the name,
 * in brackets: inside the parentheses it broke the line format, and a target with no ratio was not printed.
 */
export function formatResult(r: BenchResult): string {
  const value = r.value >= 100 ? Math.round(r.value).toString() : r.value.toFixed(2);
  const name = r.target === undefined ? r.name : `${r.name} [target ${r.target}]`;
  const ratio = r.ratio === undefined ? '' : ` (ratio ${r.ratio.toFixed(2)} vs baseline)`;
  return `${name}: ${value} ${r.unit}${ratio}`;
}

/** One line per result. */
export function report(results: BenchResult[]): void {
  for (const r of results) process.stdout.write(`${formatResult(r)}\n`);
}
