import { invalidArgument } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a TTL as an operator writes it: plain seconds ("3600", as SPIRE's -x509SVIDTTL) or a number with a unit
 * ("90s", "15m", "24h", "7d", "1h30m"). Returns milliseconds; zero and negatives are refused.
 */
export function parseDuration(input: string | number, what = 'duration'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input <= 0) throw invalidArgument(`${what} must be a positive number of seconds, got ${input}`);
    return atLeastOneMs(input * 1000, String(input), what);
  }
  const trimmed = input.trim();
  // Plain seconds read as "<n>s", so that a flag's "0" is answered as its "0s" is, not as a config file's number.
  const text = /^\d+$/.test(trimmed) ? `${trimmed}s` : trimmed;
  // Go's spellings of a fraction too (".5s", "1.s"), as SPIRE's durations are written.
  const re = /(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * (UNITS[m[2]!] ?? 0);
    matched = re.lastIndex;
  }
  // "0s" is well formed, and refused for its value as 0 is.
  if (text !== '' && matched === text.length && total === 0) throw invalidArgument(`${what} must be positive, got "${input}"`);
  // A run of digits long enough makes Infinity, which would pass for a valid (and endless) duration.
  if (text === '' || matched !== text.length || !(total > 0) || !Number.isFinite(total)) {
    throw invalidArgument(`${what} "${input}" is not a valid duration: use seconds (3600) or units like 90s, 15m, 24h, 7d`);
  }
  return atLeastOneMs(total, `"${input}"`, what);
}

/** Milliseconds, whole: a positive duration below half a millisecond would round to zero, which was refused above. */
function atLeastOneMs(ms: number, shown: string, what: string): number {
  if (Math.round(ms) === 0) throw invalidArgument(`${what} must be at least 1ms, got ${shown}`);
  return Math.round(ms);
}

/** Formats milliseconds compactly for messages: 86400000 → "24h", 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  // Exact below a minute: a `--timeout 500ms` or `1500ms` must not be echoed back as "1s" or "2s".
  if (ms < 60_000 && ms % 1000 !== 0) return `${ms}ms`;
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || `${ms}ms`;
}
