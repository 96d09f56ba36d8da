/**
 * Rolling an agent back onto a data dir a newer agent wrote: the real meshid-agent binary, on an upgraded agent's data
 * dir (test/fixtures/upgrade/b6267db) whose files a future agent rewrote in a higher state format. No server is
 * needed: the agent must stop before it connects to one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { AGENT_MAIN } from '../support/cluster.js';
import { tempDir } from '../support/server-kit.js';
import { runNode } from '../support/server-process.js';

const FIXTURE = path.join(packageRoot, 'test/fixtures/upgrade/b6267db/agent-data');

function contents(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((n) => [n, fs.readFileSync(path.join(dir, n), 'latin1')]));
}

test('meshid-agent on a data dir of a newer state format exits non-zero with one line naming the formats and what to do, and changes no file', async (t) => {
  const tmp = tempDir('meshid-agent-rollback-');
  t.after(tmp.cleanup);
  const dataDir = path.join(tmp.dir, 'data');
  fs.mkdirSync(dataDir, { mode: 0o700 });
  for (const name of fs.readdirSync(FIXTURE)) {
    const text = fs.readFileSync(path.join(FIXTURE, name), 'utf8');
    // What a future agent of format 2 leaves: its documents say so; the journal is whatever that format makes it.
    const rewritten = name.endsWith('.json') ? JSON.stringify({ ...(JSON.parse(text) as object), format: 2 }) + '\n' : text;
    fs.writeFileSync(path.join(dataDir, name), rewritten, { mode: 0o600 });
  }
  const before = contents(dataDir);
  const r = await runNode(AGENT_MAIN, ['run', '--server-address', '127.0.0.1:1', '--socket-path', path.join(tmp.dir, 'api.sock'), '--data-dir', dataDir]);
  assert.notEqual(r.code, 0, r.err);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, r.err);
  assert.match(
    lines[0]!,
    new RegExp(
      `${path.join(dataDir, 'agent-svid.json')} cannot be read: the agent identity file has format 2, written by a newer meshid-agent; this one \\(.+\\) reads format 1\\. ` +
        'Run that newer meshid-agent \\(or a later one\\) on ',
    ),
  );
  assert.ok(!fs.existsSync(path.join(tmp.dir, 'api.sock')), 'no Workload API socket was opened');
  const after = contents(dataDir);
  delete after['agent.lock'];
  assert.deepEqual(after, before, 'every file as the newer agent left it');
});
