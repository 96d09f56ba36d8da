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

/** Parses /proc/<pid>/status: State, Uid and Gid (real, effective, saved, fs) and Groups lines. */
export function parseProcStatus(text: string): ProcStatus {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const state = fields.get('State')?.charAt(0);
  if (state === undefined || state === '') throw new Error('status has no State line');
  const uids = ids(fields.get('Uid'), 'Uid');
  const gids = ids(fields.get('Gid'), 'Gid');
  if (uids.length < 2 || gids.length < 2) throw new Error('status Uid/Gid lines are incomplete');
  const groupsLine = fields.get('Groups');
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
