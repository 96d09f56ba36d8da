/**
 * What the `meshid-server restore` integration tests share (server-restore-command: restores and refusals;
 * server-restore-interrupted: restores cut short), and `backup` for server-backup and server-backup-races: a
 * backed-up running server, the checks that a restored server
 * voided the backup's join tokens and renews its agents, a directory's contents, and a restore killed at a step.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { packageRoot } from '../../src/common/paths.js';
import { runNode, SERVER_MAIN, startServerProcess, type CliResult, type ServerProcess } from './server-process.js';
import { attestAgent, attestWithToken, connectNode, joinToken, nodeCall, type AgentIdentity } from './node-api-client.js';

/** `meshid-server backup` against `server`, run in `cwd`. */
export function backupCli(server: ServerProcess, args: string[], cwd = process.cwd()): Promise<CliResult> {
  return runNode(SERVER_MAIN, ['backup', ...args, '--admin-socket', server.adminSocket], {}, cwd);
}

export const restoreCli = (args: string[]): Promise<CliResult> => runNode(SERVER_MAIN, ['restore', ...args]);

/** A running server in `dir`, a backup of it in `dir`/backup, and what the backup holds. */
export async function backedUp(dir: string): Promise<{ live: ServerProcess; backup: string; roots: string; agent: AgentIdentity; tokens: string[] }> {
  const live = await startServerProcess(dir);
  try {
    const roots = (await live.cli(['bundle', 'show'])).out;
    const agent = await attestAgent(live, roots);
    const tokens = [await joinToken(live), await joinToken(live)];
    const backup = path.join(dir, 'backup');
    const written = await live.cli(['backup', '--out', backup]);
    assert.equal(written.code, 0, written.err);
    return { live, backup, roots, agent, tokens };
  } catch (err) {
    // Not yet the caller's to stop: a failure here would leave it running, and the test file waiting on it.
    await live.stop('SIGKILL');
    throw err;
  }
}

export async function refusedAsSpent(server: ServerProcess, roots: string, token: string): Promise<void> {
  await assert.rejects(attestWithToken(server, roots, token), (e: grpc.ServiceError) => {
    assert.equal(grpc.status[e.code], 'PERMISSION_DENIED', e.details);
    assert.match(e.details, /^join token is unknown, already used or revoked/);
    return true;
  });
}

export async function renews(server: ServerProcess, roots: string, agent: AgentIdentity): Promise<void> {
  const client = connectNode(server, roots, agent);
  try {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const renewed = await nodeCall<{ svid_chain: Buffer[] }>(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
    assert.equal(parseCertificate(renewed.svid_chain[0]!).uriSans[0], agent.id);
  } finally {
    client.close();
  }
}

/** Every file under `dir` with its content, to show a refused restore changed nothing. */
export function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = fs.readFileSync(path.join(e.parentPath, e.name)).toString('base64');
  }
  return out;
}

export const stagingLeft = (parent: string): string[] => fs.readdirSync(parent).filter((n) => /\.restoring-[0-9a-f]{12}$/.test(n));

/** `meshid-server restore` that kills itself (SIGKILL) at `point` of test/support/kill-at-point; resolves with its end. */
export function restoreKilledAt(args: string[], point: string): Promise<{ signal: NodeJS.Signals | null; output: string }> {
  const preload = path.join(packageRoot, 'dist/test/support/kill-at-point.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVER_MAIN, 'restore', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: `--import ${preload}`, MESHID_TEST_KILL_AT: point },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (_code, signal) => resolve({ signal, output }));
  });
}
