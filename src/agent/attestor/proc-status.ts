/**
 * Parsers for the two /proc/<pid> files the Unix workload attestor reads (proc(5)). Pure functions: they throw a
 * plain Error naming what is malformed, and the attestor turns that into a failed attestation.
 */

export interface ProcStatus {
  /** One-letter state ("R", "S", "Z" zombie, "X" dead, ...). */
  readonly state: string;
  readonly realUid: number;
  readonly effectiveUid: number;
  readonly realGid: number;
  readonly effectiveGid: number;
  /** Supplementary group ids, in the kernel's order. */
  readonly groups: readonly number[];
}

/**
 * Parses /proc/<pid>/status: State, Uid and Gid (real, effective, saved, fs) and Groups lines. Only those four lines
 * are looked at (status has ~55; this runs on every Workload API stream open, so no per-line work for the rest).
 */
export function parseProcStatus(text: string): ProcStatus {
  const state = field(text, 'State')?.charAt(0);
  if (state === undefined || state === '') throw new Error('status has no State line');
  const uids = ids(field(text, 'Uid'), 'Uid');
  const gids = ids(field(text, 'Gid'), 'Gid');
  if (uids.length < 2 || gids.length < 2) throw new Error('status Uid/Gid lines are incomplete');
  const groupsLine = field(text, 'Groups');
  if (groupsLine === undefined) throw new Error('status has no Groups line');
  return {
    state,
    realUid: uids[0]!,
    effectiveUid: uids[1]!,
    realGid: gids[0]!,
    effectiveGid: gids[1]!,
    groups: groupsLine === '' ? [] : ids(groupsLine, 'Groups'),
  };
}

/** The trimmed value of the last "<name>:" line (the kernel writes each once; last wins as with a map of lines). */
function field(text: string, name: string): string | undefined {
  const key = `${name}:`;
  let at = text.startsWith(key) ? 0 : -1;
  for (let i = text.indexOf(`\n${key}`); i !== -1; i = text.indexOf(`\n${key}`, i + 1)) at = i + 1;
  if (at === -1) return undefined;
  const end = text.indexOf('\n', at);
  return text.slice(at + key.length, end === -1 ? text.length : end).trim();
}

function ids(value: string | undefined, name: string): number[] {
  if (value === undefined) throw new Error(`status has no ${name} line`);
  return value.split(/\s+/).map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`status ${name} line has a non-numeric id "${s}"`);
    return Number(s);
  });
}

/**
 * The process start time (field 22 of /proc/<pid>/stat, clock ticks since boot) as a string. Together with the pid it
 * names one process: a recycled pid has a later start time. The command name (field 2) may contain spaces and
 * parentheses, so fields are counted after the last ')'.
 */
export function parseStartTime(stat: string): string {
  const close = stat.lastIndexOf(')');
  if (close === -1) throw new Error('stat has no command name');
  const rest = stat.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field 22 is rest[19].
  const start = rest[19];
  if (start === undefined || !/^\d+$/.test(start)) throw new Error('stat has no start time');
  return start;
}
