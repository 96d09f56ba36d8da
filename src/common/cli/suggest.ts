/**
 * "Did you mean …?" for command lines: the candidate closest to what the operator typed, by edit distance, or
 * undefined when nothing is close enough to be a plausible typo.
 */
export function closestMatch(input: string, candidates: Iterable<string>): string | undefined {
  const needle = input.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(needle, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  // A third of the word (at least 2 edits) catches typos and case slips (-spiffeId) without suggesting
  // unrelated flags for unrelated words. A word of four letters or fewer gets one edit: two would rewrite half of it
  // or more, so that "db", "id" or "tls" would read as the agent's "sds".
  const limit = needle.length <= SHORT_WORD ? 1 : Math.max(2, Math.floor(needle.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** The longest word only one edit away from a candidate is taken for a typo of. */
const SHORT_WORD = 4;

/** Levenshtein distance with adjacent transpositions counted as one edit ("sleector" → "selector"). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
