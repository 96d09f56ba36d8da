/**
 * Daemons given a directory they cannot create: one under /proc (which answers mkdir with ENOENT, on which Node's
 * recursive mkdir loops for ever) or under /sys (EPERM, or EACCES for a user other than root). Each must exit 1 at
 * once with the setting that named the path, not hang or print a bare errno.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AGENT_MAIN } from '../support/cluster.js';
import { SERVER_MAIN } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';
import { tetheredDaemon } from '../support/tethered-daemon.js';

/** Runs a daemon to its exit; one still running after `boundMs` (hung) is killed and reported as such. */
function runToExit(main: string, args: string[], boundMs = 60_000): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], tetheredDaemon(process.env));
    let err = '';
    child.stdout.resume();
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const hung = setTimeout(() => {
      err += `\n(still running after ${boundMs} ms: killed)`;
      child.kill('SIGKILL');
    }, boundMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(hung);
      resolve({ code, err });
    });
  });
}

function agentRun(dir: string, flags: { socketPath?: string; dataDir?: string }): Promise<{ code: number | null; err: string }> {
  return runToExit(AGENT_MAIN, [
    'run', '--server-address', '127.0.0.1:1', '--join-token=unused', '--insecure-bootstrap',
    '--socket-path', flags.socketPath ?? path.join(dir, 'socket', 'api.sock'), '--data-dir', flags.dataDir ?? path.join(dir, 'data'),
  ]);
}

function serverRun(dir: string, flags: { adminSocket?: string; dataDir?: string }): Promise<{ code: number | null; err: string }> {
  return runToExit(SERVER_MAIN, [
    'run', '--trust-domain', 'example.org', '--bind-address', '127.0.0.1:0',
    '--admin-socket', flags.adminSocket ?? path.join(dir, 'admin', 'admin.sock'), '--data-dir', flags.dataDir ?? path.join(dir, 'data'),
  ]);
}

test('meshid-agent run --socket-path under /proc exits 1 at once naming --socket-path and /proc, instead of hanging', async (t) => {
  const { dir, cleanup } = tempDir('meshid-uncreatable-');
  t.after(cleanup);
  const r = await agentRun(dir, { socketPath: '/proc/nope/api.sock' });
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /cannot create the workload socket directory \/proc\/nope \(--socket-path, socket_path\): \/proc does not let directories be created in it \(ENOENT/);
});

test('meshid-agent run --socket-path under /sys names --socket-path and /sys, not only a bare EPERM', async (t) => {
  const { dir, cleanup } = tempDir('meshid-uncreatable-');
  t.after(cleanup);
  const r = await agentRun(dir, { socketPath: '/sys/x/api.sock' });
  assert.equal(r.code, 1, r.err);
  // root meets sysfs's EPERM; another user the directory's mode first (EACCES).
  assert.match(r.err, /cannot create the workload socket directory \/sys\/x \(--socket-path, socket_path\): \/sys (does not let directories be created in it \(EPERM|is not writable by this user)/);
});

test('meshid-agent run --data-dir under /proc exits 1 at once naming --data-dir', async (t) => {
  const { dir, cleanup } = tempDir('meshid-uncreatable-');
  t.after(cleanup);
  const r = await agentRun(dir, { dataDir: '/proc/nope/data' });
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /cannot create the agent data directory \/proc\/nope\/data \(--data-dir, data_dir\): \/proc does not let directories be created in it/);
});

test('meshid-server run --admin-socket or --data-dir under /proc exits 1 at once naming the setting', async (t) => {
  const { dir, cleanup } = tempDir('meshid-uncreatable-');
  t.after(cleanup);
  const admin = await serverRun(dir, { adminSocket: '/proc/nope/admin.sock' });
  assert.equal(admin.code, 1, admin.err);
  assert.match(admin.err, /cannot create the admin socket directory \/proc\/nope \(--admin-socket, admin_socket\): \/proc does not let directories be created in it/);
  const data = await serverRun(dir, { dataDir: '/proc/nope/data' });
  assert.equal(data.code, 1, data.err);
  assert.match(data.err, /cannot create the data directory \/proc\/nope\/data \(--data-dir, data_dir\): \/proc does not let directories be created in it/);
});

test('a socket path longer than a Unix socket takes is refused by either daemon, with no socket left at a cut-short path', async (t) => {
  const { dir, cleanup } = tempDir('meshid-uncreatable-');
  t.after(cleanup);
  // 120 bytes of directory name: Node would bind the path cut to 107 bytes, a socket file in `dir` itself.
  const deep = path.join(dir, 'd'.repeat(120));
  fs.mkdirSync(deep, { mode: 0o700 });
  const agent = await agentRun(dir, { socketPath: path.join(deep, 'api.sock') });
  assert.equal(agent.code, 1, agent.err);
  assert.match(agent.err, /api\.sock is \d+ bytes long, more than the 107 a Unix socket path may have/);
  const server = await serverRun(dir, { adminSocket: path.join(deep, 'admin.sock'), dataDir: path.join(dir, 'server-data') });
  assert.equal(server.code, 1, server.err);
  assert.match(server.err, /admin\.sock is \d+ bytes long, more than the 107 a Unix socket path may have/);
  assert.deepEqual(fs.readdirSync(dir).filter((name) => fs.lstatSync(path.join(dir, name)).isSocket()), []);
});
