/**
 * What `unix:path:` is for executables with unusual paths, against a real agent: the kernel's name for the file the
 * process runs (/proc/<pid>/exe), byte for byte. A path with spaces and a newline matches an entry spelling it; a
 * workload started through a symlink is its target, not the link.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { AGENT_MAIN, startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';

let cluster: Cluster;
let agent: AgentProcess;
let odd: string;
let target: string;
let link: string;

before(async () => {
  cluster = await startCluster('meshid-exe-paths-');
  const dir = path.join(cluster.dir, 'bin dir\nwith a newline');
  fs.mkdirSync(dir);
  odd = path.join(dir, 'my node');
  target = path.join(cluster.dir, 'opt-node');
  link = path.join(cluster.dir, 'node-link');
  for (const copy of [odd, target]) {
    fs.copyFileSync(process.execPath, copy);
    fs.chmodSync(copy, 0o755);
  }
  fs.symlinkSync(target, link);
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/odd-path', selectors: [`unix:path:${odd}`] });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/target', selectors: [`unix:path:${target}`] });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/link', selectors: [`unix:path:${link}`] });
  agent = await cluster.startAgent({ joinToken: await cluster.token() });
});

after(async () => {
  await cluster?.cleanup();
});

/** `meshid-agent api fetch x509` run by `executable`: the SPIFFE IDs it printed, or its output when it failed. */
async function fetchAs(executable: string): Promise<string[]> {
  const child = spawn(executable, [AGENT_MAIN, 'api', 'fetch', 'x509', '--socket-path', agent.socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, out);
  return [...out.matchAll(/spiffe:\/\/example\.org\/[\w-]+/g)].map((m) => m[0]).sort();
}

test('an executable path with spaces and a newline matches the entry that spells it', async () => {
  assert.deepEqual(await fetchAs(odd), ['spiffe://example.org/odd-path']);
});

test('a workload started through a symlink is attested by the path of its target, not of the link', async () => {
  assert.deepEqual(await fetchAs(link), ['spiffe://example.org/target']);
});
