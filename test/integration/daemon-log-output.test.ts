/**
 * The daemons' log output as operators wire it: stderr redirected to a file. When that file's disk is full every log
 * write fails (ENOSPC; /dev/full gives the same answer to every write), and a failing log line must not take
 * meshid-agent or meshid-server down with it: both keep serving, and stop cleanly on SIGTERM.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AGENT_MAIN, startCluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { teardown } from '../support/teardown.js';
import { tetheredDaemonWritingTo } from '../support/tethered-daemon.js';

/** Starts a daemon whose stderr (and stdout) is /dev/full, at log level debug, so that it logs a lot. */
function spawnOnFullDisk(main: string, args: string[]): { child: ChildProcess; exited: Promise<number | null> } {
  const full = fs.openSync('/dev/full', 'w');
  try {
    const child = spawn(process.execPath, [main, ...args], tetheredDaemonWritingTo(full, { ...process.env, MESHID_LOG_LEVEL: 'debug' }));
    return { child, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
  } finally {
    fs.closeSync(full);
  }
}

/** Readiness of a process is an external event: poll `check` with a generous bound. */
async function waitUntil(what: string, child: ChildProcess, check: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) instead`);
    if (await check().catch(() => false)) return;
    if (attempt > 300) throw new Error(`${what}: not within the bound`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('meshid-agent whose stderr refuses every write (a full disk) keeps serving workloads and stops cleanly', async (t) => {
  const cluster = await startCluster('meshid-log-full-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/app', selectors: [`unix:uid:${process.getuid!()}`] });
  const socketDir = path.join(cluster.dir, 'full-socket');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  const socketPath = path.join(socketDir, 'api.sock');
  const { child, exited } = spawnOnFullDisk(AGENT_MAIN, [
    'run', '--server-address', cluster.server.address(), '--trust-bundle', cluster.bundleFile,
    '--socket-path', socketPath, '--data-dir', path.join(cluster.dir, 'full-data'), `--join-token=${await cluster.token()}`,
  ]);
  teardown(t).after(() => void child.kill('SIGKILL'));

  const fetchIds = async (): Promise<string[]> => {
    const client = connectWorkloadApi(socketPath, { timeoutMs: 2000 });
    try {
      return ((await client.fetchX509Svid()).svids ?? []).map((s) => s.spiffe_id!);
    } finally {
      client.close();
    }
  };
  // Attestation, the first sync, signing and every call log lines (debug): each of them fails to be written.
  await waitUntil('the agent serving its SVID', child, async () => (await fetchIds()).includes('spiffe://example.org/app'));
  for (let i = 0; i < 5; i++) assert.deepEqual(await fetchIds(), ['spiffe://example.org/app']);

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(fs.existsSync(socketPath), false, 'a clean stop removes the socket');
});

test('meshid-server whose stderr refuses every write (a full disk) keeps serving the admin API and stops cleanly', async (t) => {
  const { dir, cleanup } = tempDir('meshid-log-full-server-');
  teardown(t).after(cleanup);
  const adminSocket = path.join(dir, 'admin', 'admin.sock');
  const { child, exited } = spawnOnFullDisk(SERVER_MAIN, [
    'run', '--trust-domain', 'example.org', '--datacenter', 'east', '--data-dir', path.join(dir, 'data'),
    '--bind-address', '127.0.0.1:0', '--admin-socket', adminSocket,
  ]);
  teardown(t).after(() => void child.kill('SIGKILL'));
  const cli = (args: string[]) => runNode(SERVER_MAIN, [...args, '--admin-socket', adminSocket]);

  // Creating the CA at start logs, and so does every admin call.
  await waitUntil('the server answering health checks', child, async () => (await cli(['healthcheck'])).code === 0);
  for (let i = 0; i < 3; i++) {
    const token = await cli(['token', 'generate', '--datacenter', 'east']);
    assert.equal(token.code, 0, token.err);
    assert.match(token.out, /^Token: /);
  }
  assert.equal((await cli(['healthcheck'])).code, 0);

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(fs.existsSync(adminSocket), false, 'a clean stop removes the admin socket');
});
