import fs from 'node:fs';
import { failedPrecondition } from './errors.js';

/**
 * One agent per data dir: two agents writing the same state would each overwrite the other's keys. The lock is a
 * file holding the owner's pid, created exclusively; a lock whose pid no longer runs (the process was killed) is
 * taken over. A lock naming our own pid is ours (a process restarted as pid 1 in a container). `program` names the
 * owner in the refusal (meshid-agent, meshid-server).
 */
export function acquireDataDirLock(file: string, program: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt(readOrEmpty(file), 10);
    if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && processRuns(owner)) {
      throw failedPrecondition(
        `the data dir is in use by another ${program} (pid ${owner}, lock ${file}); stop it or use another --data-dir`,
      );
    }
    fs.rmSync(file, { force: true });
  }
  throw failedPrecondition(`cannot take the data dir lock ${file}: another process keeps creating it`);
}

function readOrEmpty(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
