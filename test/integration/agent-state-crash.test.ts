/**
 * kill -9 while the agent rewrites its state: whatever instant the process dies, the next start reads one complete
 * version — the last acknowledged or the one being written — never a torn or mixed file (SPEC: crash-safe state).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../src/agent/storage/agent-store.js';
import { silentLogger } from '../../src/common/log.js';
import { packageRoot } from '../../src/common/paths.js';
import { tempDir } from '../support/server-kit.js';

const WRITER = path.join(packageRoot, 'dist/test/support/agent-state-writer.js');
const entryCount = (revision: number): number => 1500 + 500 * (revision % 3);

test('a state write killed at any moment leaves the previous or the new version, complete', async (t) => {
  const dir = tempDir('meshid-agent-crash-');
  try {
    const dataDir = path.join(dir.dir, 'agent');
    for (let round = 0; round < 12; round++) {
      const child = spawn(process.execPath, [WRITER, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      let acked = 0;
      let lines = '';
      // Kill after a varying number of completed writes, at a varying offset into the next one.
      const target = 2 + (round % 5);
      await new Promise<void>((resolve) => {
        child.stdout!.on('data', (d: Buffer) => {
          lines += d.toString();
          const done = lines.split('\n').filter((l) => l !== '');
          acked = Number(done[done.length - 1] ?? 0);
          if (done.length >= target && child.exitCode === null && !child.killed) {
            const spin = Date.now() + (round % 4);
            while (Date.now() < spin);
            child.kill('SIGKILL');
          }
        });
        child.once('exit', () => resolve());
      });
      const store = AgentStore.open(dataDir, silentLogger());
      try {
        const state = store.loadState(Date.now());
        assert.ok(state, `round ${round}: a state is there`);
        assert.ok(state.revision === acked || state.revision === acked + 1, `round ${round}: revision ${state.revision}, last acknowledged ${acked}`);
        assert.equal(state.entries.length, entryCount(state.revision), `round ${round}: a complete version`);
        assert.ok(state.entries.every((e) => e.revision === state.revision), `round ${round}: no mixed versions`);
        assert.deepEqual(fs.readdirSync(dataDir).filter((n) => n.endsWith('.tmp')), [], 'temp files of the killed write are cleaned up');
      } finally {
        store.close();
      }
    }
    t.diagnostic('12 kills, each restart read a complete version');
  } finally {
    dir.cleanup();
  }
});
