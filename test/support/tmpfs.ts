/**
 * Real storage failures for tests: a small tmpfs mounted for one test (root only, as CI runs; skipped otherwise),
 * and filling it to the last byte.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { teardown } from './teardown.js';

interface TestContext {
  after(fn: () => void | Promise<void>): void;
  skip(reason: string): void;
}

/**
 * Mounts a tmpfs of `size` (mount's syntax: "1m", "256k") on a new temp dir and returns it; the test's `after`
 * unmounts and removes it. Undefined (the test is skipped) when not root. `readOnly` mounts it read-only; `inodes`
 * caps its files (directories included).
 */
export function mountTmpfs(t: TestContext, size: string, options: { readOnly?: boolean; inodes?: number } = {}): string | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-tmpfs-'));
  const opts = `size=${size},mode=0700${options.readOnly === true ? ',ro' : ''}${options.inodes !== undefined ? `,nr_inodes=${options.inodes}` : ''}`;
  const mounted = process.geteuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir]).status === 0;
  teardown(t).after(() => {
    if (mounted) spawnSync('umount', ['-l', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  if (!mounted) t.skip(process.geteuid?.() === 0 ? 'mount -t tmpfs failed (no CAP_SYS_ADMIN here?)' : 'needs root, to mount a small tmpfs');
  return mounted ? dir : undefined;
}

/** Fills the file system holding `dir` until not one more byte fits; returns the filler file (remove it to free). */
export function fillDisk(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'a');
  try {
    for (const chunk of [Buffer.alloc(64 * 1024, 1), Buffer.alloc(1, 1)]) {
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}
