/**
 * The unix attestor run as README allows besides root: as another user with CAP_SYS_PTRACE, for real (setpriv, uid
 * 65534 with the capability ambient). It can read every caller's /proc entries, but not an executable whose mode denies
 * it reading (0711 here): such a caller is attested by its ids and path and gets no sha256 selector, as an executable
 * over the size limit gets none, while a caller whose executable it can read gets the digest sha256sum(1) computes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { systemProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { UnixWorkloadAttestor } from '../../../src/agent/attestor/unix-workload-attestor.js';
import type { Logger } from '../../../src/common/log.js';
import { packageRoot } from '../../../src/common/paths.js';
import { ClientProcess, PeerListener, publicTempDir } from '../../support/peer-process.js';
import { teardown } from '../../support/teardown.js';

const AS_PTRACER = ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+sys_ptrace', '--ambient-caps=+sys_ptrace'];
const skip =
  spawnSync('setpriv', [...AS_PTRACER, 'true'], { stdio: 'ignore' }).status === 0 && spawnSync('sha256sum', ['--version'], { stdio: 'ignore' }).status === 0
    ? false
    : 'needs setpriv(1) with ambient capabilities (as root) and sha256sum(1)';

/** Runs as 65534 with CAP_SYS_PTRACE: attests each of `count` connections and prints one JSON line per outcome. */
const ATTESTOR = `
  const [peerProcess, attestorModule, socketPath, count] = process.argv.slice(1);
  const { PeerListener } = await import(peerProcess);
  const { UnixWorkloadAttestor } = await import(attestorModule);
  const listener = await PeerListener.listen(socketPath);
  process.stdout.write('listening\\n');
  const warnings = [];
  const log = { warn: (fields, message) => warnings.push(message) };
  // Above node's size, so the readable caller's executable (node itself) is hashed.
  const attestor = new UnixWorkloadAttestor({ maxHashBytes: 512 * 1024 * 1024, log });
  for (let i = 0; i < Number(count); i++) {
    const { peer } = await listener.next();
    let outcome;
    try {
      outcome = { uid: peer.uid, selectors: attestor.attest(peer).map((s) => s.value), warnings: warnings.splice(0) };
    } catch (e) {
      outcome = { uid: peer.uid, error: e.message };
    }
    process.stdout.write(JSON.stringify(outcome) + '\\n');
  }
  await listener.close();
`;

test('an agent with CAP_SYS_PTRACE, not root, attests a caller whose executable it may not read without sha256; a readable one with it', { skip }, async (t) => {
  const dir = publicTempDir('meshid-unreadable-exe-');
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // The attestor, as 65534, makes its socket here.
  fs.chownSync(dir, 65534, 65534);
  const socketPath = path.join(dir, 'agent.sock');
  // Root's copy of node that others may run but not read.
  const unreadable = path.join(dir, 'node-0711');
  fs.copyFileSync(process.execPath, unreadable);
  fs.chmodSync(unreadable, 0o711);
  const read = spawnSync('setpriv', [...AS_PTRACER, 'head', '-c', '1', unreadable], { stdio: 'ignore' });
  assert.notEqual(read.status, 0, 'the attestor\'s user must not be able to read the 0711 copy');

  const modules = ['dist/test/support/peer-process.js', 'dist/src/agent/attestor/unix-workload-attestor.js'].map((m) => path.join(packageRoot, m));
  const attestor = spawn('setpriv', [...AS_PTRACER, process.execPath, '--input-type=module', '-e', ATTESTOR, ...modules, socketPath, '2'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  teardown(t).after(() => attestor.kill('SIGKILL'));
  let out = '';
  let err = '';
  attestor.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const listening = new Promise<void>((resolve, reject) => {
    attestor.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening\n')) resolve();
    });
    attestor.on('exit', () => reject(new Error(`the attestor exited: ${out}${err}`)));
  });
  const exited = new Promise<number | null>((resolve) => attestor.on('close', resolve));
  await listening;

  const hidden = new ClientProcess(socketPath, { uid: 1001, gid: 1001, exe: Buffer.from(unreadable) });
  teardown(t).after(() => hidden.stop());
  await new Promise<void>((resolve) => hidden.child.stdout!.once('data', () => resolve()));
  const readable = new ClientProcess(socketPath, { uid: 1001, gid: 1001 });
  teardown(t).after(() => readable.stop());
  assert.equal(await exited, 0, err);

  type Outcome = { uid: number; error?: string; selectors?: string[]; warnings?: string[] };
  const [first, second] = out.split('\n').slice(1).filter((l) => l !== '').map((l) => JSON.parse(l) as Outcome);
  assert.equal(first?.error, undefined, 'refused the whole caller over a digest it could not take');
  assert.deepEqual(first?.selectors, ['uid:1001', 'gid:1001', `path:${unreadable}`]);
  assert.match(first?.warnings?.join('\n') ?? '', /cannot be read by the agent.*no sha256 selector/);
  const digest = spawnSync('sha256sum', [fs.realpathSync(process.execPath)], { encoding: 'utf8' }).stdout.split(' ')[0];
  assert.deepEqual(second?.selectors, ['uid:1001', 'gid:1001', `path:${fs.realpathSync(process.execPath)}`, `sha256:${digest}`]);
});

test('a root agent refused an executable (stubbed open: EACCES, as AppArmor or SELinux answers) names a security module, not root or a capability it has', { skip: process.geteuid?.() === 0 ? false : 'needs root' }, async (t) => {
  const dir = publicTempDir('meshid-lsm-exe-');
  const listener = await PeerListener.listen(path.join(dir, 'p.sock'));
  teardown(t).after(async () => {
    await listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const warnings: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const log = { warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }) } as unknown as Logger;
  const denied = (): never => {
    throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
  };
  const attestor = new UnixWorkloadAttestor({ hooks: { ...systemProcHooks, openFile: denied }, log, memoEntries: 0 });
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  teardown(t).after(() => client.stop());
  const { peer } = await listener.next();

  const selectors = attestor.attest(peer).map((s) => s.value);
  assert.ok(!selectors.some((s) => s.startsWith('sha256:')), selectors.join(' '));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!.message, /cannot be read by the agent: it gets no sha256 selector; a security module \(AppArmor, SELinux\) denies/);
  assert.doesNotMatch(warnings[0]!.message, /run (the agent|it) as root|CAP_DAC_READ_SEARCH/);
  assert.equal(warnings[0]!.fields['error'], 'EACCES');
});
