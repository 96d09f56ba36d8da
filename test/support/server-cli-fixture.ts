/**
 * A meshid-server process for CLI tests, one per test file (node --test runs each file in its own process): every
 * admin command runs as a child process, as an operator or a script would run it. `dir`, `socket` and `serverOutput`
 * are live bindings, set once the hooks startServerCliFixture registers have run.
 */
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { TestCa } from './fake-sds-cache.js';
import { tempDir } from './server-kit.js';
import { SERVER_MAIN, type CliResult } from './server-process.js';
import { jobFreeKeyPair } from './job-free-key-pair.js';
import { serverReady } from './server-ready.js';
import { tetheredDaemon } from './tethered-daemon.js';

const MAIN = SERVER_MAIN;
export const TD = 'example.org';

/** A finished command's exit status, stdout and stderr. */
export type Result = CliResult;

export let dir: string;
let cleanup: () => void;
export let socket: string;
let server: ChildProcess;
export let serverOutput = '';

/** Runs `meshid-server …` to completion; the admin socket comes from the environment unless a test passes its own. */
export function cli(args: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string; uid?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, MESHID_ADMIN_SOCKET: socket, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
    child.stdin.end(options.stdin ?? '');
  });
}

/** Asserts a failed command: exit 1, nothing on stdout, exactly one stderr line matching `line`. */
export function assertError(r: Result, line: RegExp): void {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stdout: ${r.out}; stderr: ${r.err}`);
  assert.equal(r.out, '', 'a failure prints nothing on stdout');
  assert.equal(r.err.split('\n').filter((l) => l !== '').length, 1, `expected one stderr line, got:\n${r.err}`);
  assert.match(r.err.trimEnd(), line);
}

export function assertOk(r: Result): void {
  assert.equal(r.code, 0, `expected exit 0, got ${r.code}; stderr: ${r.err}`);
  assert.equal(r.err, '');
}

/** The value of a `Label : value` line in pretty output. */
export function field(out: string, label: string): string {
  const m = new RegExp(`^${label} *: (.*)$`, 'm').exec(out);
  assert.ok(m, `no "${label}" line in:\n${out}`);
  return m[1]!;
}

export async function createEntry(args: string[]): Promise<string> {
  const r = await cli(['entry', 'create', ...args]);
  assertOk(r);
  return field(r.out, 'Entry ID');
}

/** Starts the server before the file's tests (a data dir under a new temp dir `prefix…`) and stops it after them. */
export function startServerCliFixture(prefix: string): void {
  before(async () => {
    ({ dir, cleanup } = tempDir(prefix));
    socket = path.join(dir, 'admin', 'admin.sock');
    server = spawn(
      process.execPath,
      [MAIN, 'run', '--trust-domain', TD, '--data-dir', path.join(dir, 'data'), '--bind-address', '127.0.0.1:0',
        '--admin-socket', socket, '--datacenter', 'east', '--datacenter', 'west'],
      tetheredDaemon(process.env),
    );
    server.stdout!.on('data', (d: Buffer) => (serverOutput += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (serverOutput += d.toString()));
    await serverReady(server, socket, () => serverOutput);
  });

  after(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      // A clean stop removes the admin socket.
      assert.equal(fs.existsSync(socket), false, 'the server left its admin socket behind');
    }
    cleanup?.();
  });
}

/**
 * A partner's bundle for `bundle set` or `federation create|update`: a root of the partner's own (not this server's,
 * whose SPIFFE ID would make the CLI warn that it is another trust domain's CA) as PEM, or as a SPIFFE bundle document
 * that also holds a JWT key.
 */
export function partnerBundle(trustDomain: string, format: 'pem' | 'spiffe' = 'pem'): string {
  const ca = new TestCa(trustDomain);
  try {
    if (format === 'pem') return certificatesToPem([ca.rootDer]);
    const { publicKey } = jobFreeKeyPair('ec', { namedCurve: 'P-256' });
    return bundleToSpiffeJson({ ...ca.bundle(), jwtAuthorities: [{ kid: `${trustDomain}-jwt`, publicKey }] });
  } finally {
    ca.dispose();
  }
}
