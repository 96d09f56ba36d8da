export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** Ratio against the baseline measured in the same run. */
  ratio?: number;
  target?: string;
}

/** One line per result: `name: value unit (ratio X vs baseline)`. */
export function report(results: BenchResult[]): void {
  for (const r of results) {
    const value = r.value >= 100 ? Math.round(r.value).toString() : r.value.toFixed(2);
    const ratio = r.ratio === undefined ? '' : ` (ratio ${r.ratio.toFixed(2)} vs baseline${r.target ? `; target ${r.target}` : ''})`;
    process.stdout.write(`${r.name}: ${value} ${r.unit}${ratio}\n`);
  }
}
