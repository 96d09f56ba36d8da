import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { UnixWorkloadAttestor } from '../../../src/agent/attestor/unix-workload-attestor.js';
import { systemProcHooks, type ProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { MeshidError } from '../../../src/common/errors.js';
import { formatSelector, type Selector } from '../../../src/common/spiffe/selector.js';
import { ClientProcess, namesFrom, PeerListener, publicTempDir, type TestPeer } from '../../support/peer-process.js';

/*
 * The attestor's memo (AttestationMemo) under real processes: a repeated attestation of an unchanged caller skips the
 * /proc handle, hashing and name lookups, and anything that changes the caller's selectors — exit, pid reuse, setuid,
 * setgroups, a new executable, edited account files — is seen on the very next call.
 */

const BIG = 256 << 20;

async function setup(t: { after(fn: () => Promise<void> | void): void }): Promise<PeerListener> {
  const dir = publicTempDir('meshid-memo-');
  const listener = await PeerListener.listen(path.join(dir, 'p.sock'));
  t.after(async () => {
    await listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return listener;
}

function strings(selectors: readonly Selector[]): string[] {
  return selectors.map(formatSelector);
}

function isAttestationFailure(reason: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof MeshidError, `expected a MeshidError, got ${String(err)}`);
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, reason);
    return true;
  };
}

/** Real hooks that count calls; `override` may be swapped during a test. */
function countingHooks(): { hooks: ProcHooks; counts: Map<string, number>; override: Partial<ProcHooks> } {
  const counts = new Map<string, number>();
  const override: Partial<ProcHooks> = {};
  const count = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
  const hooks: ProcHooks = {
    ...systemProcHooks,
    openDirectory: (p) => (count('openDirectory'), systemProcHooks.openDirectory(p)),
    readText: (p) => (count(p.startsWith('/etc/') || !p.startsWith('/proc/') ? 'etc' : `proc:${path.basename(p)}`), (override.readText ?? systemProcHooks.readText)(p)),
    readLink: (p) => (override.readLink ?? systemProcHooks.readLink)(p),
    stat: (p) => (override.stat ?? systemProcHooks.stat)(p),
    fstat: (fd) => (override.fstat ?? systemProcHooks.fstat)(fd),
    sha256: (fd) => (count('sha256'), systemProcHooks.sha256(fd)),
    pidfdAlive: (fd) => (count('pidfdAlive'), (override.pidfdAlive ?? systemProcHooks.pidfdAlive)(fd)),
  };
  return { hooks, counts, override };
}

/**
 * A root node child that connects and then changes its own credentials on command ("groups 4,24", "ids 65534"),
 * answering "ok" once done: the caller's identity changing on an open connection.
 */
class ShapeShifter {
  readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private waiting: ((line: string) => void) | undefined;

  constructor(socketPath: string) {
    const script = `
      const net = require('node:net');
      const s = net.connect(process.argv[1], () => process.stdout.write('connected\\n'));
      s.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
      let buf = '';
      process.stdin.on('data', (d) => {
        buf += d;
        for (let i; (i = buf.indexOf('\\n')) !== -1; ) {
          const [cmd, arg] = buf.slice(0, i).split(' ');
          buf = buf.slice(i + 1);
          if (cmd === 'groups') process.setgroups(arg === '' ? [] : arg.split(',').map(Number));
          if (cmd === 'ids') { process.setgid(Number(arg)); process.setuid(Number(arg)); }
          process.stdout.write('ok\\n');
        }
      });
      process.stdin.on('end', () => process.exit(0));`;
    this.child = spawn(process.execPath, ['-e', script, socketPath], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buf = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i; (i = buf.indexOf('\n')) !== -1; ) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = this.waiting;
        this.waiting = undefined;
        if (w) w(line);
        else this.lines.push(line);
      }
    });
  }

  next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  async command(line: string): Promise<void> {
    this.child.stdin!.write(`${line}\n`);
    assert.equal(await this.next(), 'ok');
  }

  async stop(): Promise<void> {
    const exited = this.child.exitCode === null ? once(this.child, 'exit') : Promise.resolve();
    this.child.stdin!.end();
    await exited;
  }
}

test('an unchanged caller is re-read but not re-attested: no /proc handle, hash or name lookup after the first call', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const { hooks, counts } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, maxHashBytes: BIG });
  const first = attestor.attest(peer);
  for (let i = 0; i < 4; i++) assert.deepEqual(attestor.attest(peer), first);
  assert.equal(counts.get('openDirectory'), 1);
  assert.equal(counts.get('sha256'), 1);
  assert.equal(counts.get('proc:status'), 5, 'the status is read on every call');
  // A remembered caller gets the memo's own array, frozen: nobody can change what the next call gets, and the
  // cache's per-array memos (selector set, workload key) hit on every call.
  const mine = attestor.attest(peer);
  assert.equal(mine, attestor.attest(peer));
  assert.ok(Object.isFrozen(mine) && mine.every((s) => Object.isFrozen(s)));
  assert.throws(() => (mine as Array<unknown>).pop(), TypeError);
  assert.deepEqual(attestor.attest(peer), first);
});

test('after the caller exits, a remembered caller fails closed', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  attestor.attest(peer);
  attestor.attest(peer);
  await client.stop();
  assert.throws(() => attestor.attest(peer), isAttestationFailure(/process \d+ has exited/));
});

test('a pid recycled around the reads of a remembered caller fails closed: pidfd dead before, or dead after the reads', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const { hooks, counts, override } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, sha256: false });
  attestor.attest(peer);

  override.pidfdAlive = () => false;
  assert.throws(() => attestor.attest(peer), isAttestationFailure(/has exited/));
  assert.equal(counts.get('proc:status'), 1, 'nothing is read for a caller that is gone');

  // Alive before the reads, gone after: what was read may belong to a new process that got the pid.
  let calls = 0;
  override.pidfdAlive = () => ++calls === 1;
  assert.throws(() => attestor.attest(peer), isAttestationFailure(/has exited/));
  assert.equal(calls, 2);

  // And a new process with the same pid but other ids (another real uid in its status) is attested from scratch, not
  // recalled; its selectors carry the effective uid, which is still the one SO_PEERCRED recorded.
  delete override.pidfdAlive;
  override.readText = (p) => {
    const text = systemProcHooks.readText(p);
    return p.endsWith('/status') ? text.replace(/^Uid:\t65534\t/m, 'Uid:\t4242\t') : text;
  };
  const opened = counts.get('openDirectory');
  assert.ok(strings(attestor.attest(peer)).includes('unix:uid:65534'));
  assert.equal(counts.get('openDirectory'), opened! + 1);
});

test('unpinned callers (no pidfd) are always attested in full', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const { hooks, counts } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, sha256: false });
  attestor.attest(peer);
  const unpinned: TestPeer = { ...peer, pidfd: -1 };
  for (let i = 0; i < 3; i++) attestor.attest(unpinned);
  assert.equal(counts.get('openDirectory'), 4);
  assert.equal(counts.get('proc:stat'), 6, 'start time before and after the reads, every time');
});

test('setgroups() on an open connection shows in the next attestation', async (t) => {
  const listener = await setup(t);
  const groups = namesFrom('/etc/group');
  assert.ok(groups.has(4), 'this host names group 4');
  const client = new ShapeShifter(listener.socketPath);
  t.after(() => client.stop());
  assert.equal(await client.next(), 'connected');
  const { peer } = await listener.next();
  await client.command('groups ');
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  const before = strings(attestor.attest(peer));
  assert.ok(!before.includes('unix:supplementary_gid:4'));
  assert.deepEqual(strings(attestor.attest(peer)), before);
  await client.command('groups 4');
  const after = strings(attestor.attest(peer));
  assert.ok(after.includes('unix:supplementary_gid:4') && after.includes(`unix:supplementary_group:${groups.get(4)}`));
  await client.command('groups ');
  assert.deepEqual(strings(attestor.attest(peer)), before, 'and dropping the group again is seen too');
});

test('setuid() on an open connection fails closed even when the old ids were remembered', async (t) => {
  const listener = await setup(t);
  const client = new ShapeShifter(listener.socketPath);
  t.after(() => client.stop());
  assert.equal(await client.next(), 'connected');
  const { peer } = await listener.next();
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  assert.ok(strings(attestor.attest(peer)).includes('unix:uid:0'));
  attestor.attest(peer);
  await client.command('ids 65534');
  assert.throws(() => attestor.attest(peer), isAttestationFailure(/changed its uid\/gid/));
});

test('setuid() on an open connection fails closed even when another caller with the new ids was remembered', async (t) => {
  const listener = await setup(t);
  // Same executable, same ids, no supplementary groups: the memo holds exactly what the shape-shifter will look like.
  const other = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => other.stop());
  const { peer: otherPeer } = await listener.next();
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  assert.ok(strings(attestor.attest(otherPeer)).includes('unix:uid:65534'));
  const client = new ShapeShifter(listener.socketPath);
  t.after(() => client.stop());
  assert.equal(await client.next(), 'connected');
  const { peer } = await listener.next();
  assert.ok(strings(attestor.attest(peer)).includes('unix:uid:0'));
  await client.command('groups ');
  await client.command('ids 65534');
  assert.throws(() => attestor.attest(peer), isAttestationFailure(/changed its uid\/gid/));
});

test('a different executable (path or file version) is attested afresh, and hashed again', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const { hooks, counts, override } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, maxHashBytes: BIG });
  const real = strings(attestor.attest(peer));
  assert.equal(counts.get('sha256'), 1);

  // As after an exec() of a hard link to the same file: same file version, new path.
  override.readLink = (p) => (p.endsWith('/exe') ? '/opt/other/node' : systemProcHooks.readLink(p));
  assert.ok(strings(attestor.attest(peer)).includes('unix:path:/opt/other/node'));
  delete override.readLink;
  assert.deepEqual(strings(attestor.attest(peer)), real);

  // As after an exec() of a replaced binary at the same path: same path, another inode.
  const bump = <T extends { ino: bigint }>(f: T): T => ({ ...f, ino: f.ino + 1n });
  override.stat = (p) => (p.endsWith('/exe') ? bump(systemProcHooks.stat(p)) : systemProcHooks.stat(p));
  override.fstat = (fd) => bump(systemProcHooks.fstat(fd));
  const hashed = counts.get('sha256')!;
  attestor.attest(peer);
  assert.equal(counts.get('sha256'), hashed + 1, 'the new file version is hashed');
});

test('edited /etc/passwd and /etc/group change the names on the next call', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const dir = publicTempDir('meshid-memo-accounts-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const passwd = path.join(dir, 'passwd');
  const group = path.join(dir, 'group');
  fs.writeFileSync(passwd, 'someone:x:65534:65534::/:/bin/false\n');
  fs.writeFileSync(group, 'somegroup:x:65534:\n');
  const attestor = new UnixWorkloadAttestor({ sha256: false, accountFiles: { passwd, group } });
  const before = strings(attestor.attest(peer));
  assert.ok(before.includes('unix:user:someone') && before.includes('unix:group:somegroup'));
  assert.deepEqual(strings(attestor.attest(peer)), before);
  fs.writeFileSync(passwd, 'renamed-user:x:65534:65534::/:/bin/false\n');
  assert.ok(strings(attestor.attest(peer)).includes('unix:user:renamed-user'));
  fs.rmSync(group);
  assert.ok(!strings(attestor.attest(peer)).some((s) => s.startsWith('unix:group:')), 'a removed group file names nothing');
});

test('the memo holds a bounded number of selector sets; memoEntries 0 turns it off', async (t) => {
  const listener = await setup(t);
  const a = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  const b = new ClientProcess(listener.socketPath, { uid: 0, gid: 0 });
  t.after(() => Promise.all([a.stop(), b.stop()]));
  const peerA = (await listener.next()).peer;
  const peerB = (await listener.next()).peer;
  const { hooks, counts } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, sha256: false, memoEntries: 1 });
  attestor.attest(peerA);
  attestor.attest(peerA);
  attestor.attest(peerB);
  attestor.attest(peerA);
  assert.equal(counts.get('openDirectory'), 3, 'B pushed A out');

  const off = countingHooks();
  const unmemoized = new UnixWorkloadAttestor({ hooks: off.hooks, sha256: false, memoEntries: 0 });
  for (let i = 0; i < 3; i++) unmemoized.attest(peerA);
  assert.equal(off.counts.get('openDirectory'), 3);
});
