import fs from 'node:fs';

/** Whether `pid` still runs: a zombie (an orphan its new parent has not reaped yet) has stopped. */
export function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
