import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

/** The package root, found from this file whether it runs from src/ (tests via tsc output) or dist/src/. */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'proto'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('meshid: cannot find the package root (package.json + proto/)');
    dir = parent;
  }
}

export const packageRoot = findRoot();
export const protoDir = path.join(packageRoot, 'proto');
