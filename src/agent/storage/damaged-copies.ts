import fs from 'node:fs';
import path from 'node:path';

/**
 * How many damaged copies of one file (state.json, a journal) are kept aside at most. Each holds workload keys (a
 * state.json is ~20 MB at 10,000 SVIDs), and a fault that damages the state at every start (a failing disk under a
 * crash loop) would otherwise fill the disk with them.
 */
export const DAMAGED_COPIES_KEPT = 4;

/**
 * Puts `name` (in `dir`) aside, moved or copied, for inspection, and returns the aside file's name: `base` for the
 * first, `<base>.<n>` for later ones, n one more than the last. The first is never replaced: the first damage is the
 * one whose cause matters, later ones may be its consequences. At most DAMAGED_COPIES_KEPT in all: the oldest
 * numbered ones go, so the first and the latest stay.
 */
export function setAside(dir: string, name: string, base: string, how: 'move' | 'copy'): string {
  let first = false;
  const numbered: number[] = [];
  for (const n of fs.readdirSync(dir)) {
    if (n === base) first = true;
    else if (n.startsWith(`${base}.`) && /^[1-9]\d{0,8}$/.test(n.slice(base.length + 1))) numbered.push(Number(n.slice(base.length + 1)));
  }
  numbered.sort((a, b) => a - b);
  const target = !first && numbered.length === 0 ? base : `${base}.${Math.max(1, numbered.at(-1) ?? 1) + 1}`;
  const from = path.join(dir, name);
  const to = path.join(dir, target);
  if (how === 'move') fs.renameSync(from, to);
  else {
    try {
      fs.copyFileSync(from, to);
      fs.chmodSync(to, 0o600);
    } catch (err) {
      fs.rmSync(to, { force: true });
      throw err;
    }
  }
  // Only once the new copy is in: a move or copy that fails must not have cost an older copy for nothing. A removal
  // that fails is not this call's failure (the file is aside): the copy left over goes at the next setAside.
  let excess = (first ? 1 : 0) + numbered.length + 1 - DAMAGED_COPIES_KEPT;
  for (const n of numbered) {
    if (excess-- <= 0) break;
    try {
      fs.rmSync(path.join(dir, `${base}.${n}`), { force: true });
    } catch {
      break;
    }
  }
  return target;
}
