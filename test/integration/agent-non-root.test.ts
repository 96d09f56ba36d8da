/**
 * A real meshid-agent run as a plain user (uid 65534 through setpriv, no capabilities), as an operator might start it
 * by mistake: the kernel hides another uid's /proc/<pid>/exe from it (EACCES), so a caller of another uid cannot be
 * attested. That caller's error, and the agent's log once, name the remedy README gives: root or CAP_SYS_PTRACE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { AGENT_MAIN, startCluster } from '../support/cluster.js';
import { teardown } from '../support/teardown.js';

const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const skip = spawnSync(AS_NOBODY[0]!, [...AS_NOBODY.slice(1), 'true'], { stdio: 'ignore' }).status === 0 ? false : 'needs setpriv(1) (as root)';

/** `meshid-agent api fetch x509` as `uid`: its exit code and output. */
async function fetchAs(socketPath: string, uid: number): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', socketPath], { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out };
}

test('an agent run as a plain user refuses a caller of another uid naming the remedy (root or CAP_SYS_PTRACE), logged once; its own uid attests', { skip }, async (t) => {
  const cluster = await startCluster('meshid-agent-non-root-');
  teardown(t).after(() => cluster.cleanup());
  const dataDir = path.join(cluster.dir, 'agent-data');
  const socketDir = path.join(cluster.dir, 'agent-socket');
  for (const [dir, mode] of [[dataDir, 0o700], [socketDir, 0o755]] as const) {
    fs.mkdirSync(dir, { mode });
    fs.chownSync(dir, 65534, 65534);
  }
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/other-user', selectors: ['unix:uid:1001'] });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/agent-user', selectors: ['unix:uid:65534'] });
  const agent = await cluster.startAgent({ dataDir, socketPath: path.join(socketDir, 'api.sock'), joinToken: await cluster.token(), launcher: AS_NOBODY });

  const remedy = /cannot read \/proc\/\d+\/exe \(EACCES\): the agent \(uid 65534\) may not inspect the processes of uid 1001; run meshid-agent as root or with CAP_SYS_PTRACE/;
  for (let i = 0; i < 2; i++) {
    const other = await fetchAs(agent.socketPath, 1001);
    assert.notEqual(other.code, 0);
    assert.match(other.out, /Unavailable/, other.out);
    assert.match(other.out, remedy, other.out);
  }
  const own = await fetchAs(agent.socketPath, 65534);
  assert.equal(own.code, 0, own.out);
  assert.match(own.out, /spiffe:\/\/example\.org\/agent-user/);
  const logged = agent.output().split('\n').filter((l) => l.includes('"subsystem":"attestor"') && remedy.test(l));
  assert.equal(logged.length, 1, agent.output());
  assert.match(logged[0]!, /"level":40/);
});
