import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { UnixWorkloadAttestor } from '../../../src/agent/attestor/unix-workload-attestor.js';
import { connectionOutlivedCaller } from '../../../src/agent/attestor/attestation-failure.js';
import { SubordinateIds } from '../../../src/agent/attestor/subordinate-ids.js';
import { systemProcHooks, type ProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError } from '../../../src/common/errors.js';
import { formatSelector } from '../../../src/common/spiffe/selector.js';
import { ClientProcess, namesFrom, PeerListener, publicTempDir, type TestPeer } from '../../support/peer-process.js';

const NODE_HASH = createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex');
const NODE_PATH = fs.realpathSync(process.execPath);
// The node binary is ~94 MiB, over the 64 MiB default.
const BIG = 256 << 20;

async function setup(t: { after(fn: () => Promise<void> | void): void }): Promise<PeerListener> {
  const dir = publicTempDir('meshid-attest-');
  const listener = await PeerListener.listen(path.join(dir, 'p.sock'));
  t.after(async () => {
    await listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return listener;
}

/** `outlived`: whether the failure says to close the connection (the caller exited or changed ids since connect). */
function isAttestationFailure(reason: RegExp, outlived?: boolean): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof MeshidError, `expected a MeshidError, got ${String(err)}`);
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, /^workload attestation failed: /);
    assert.match(err.message, reason);
    if (outlived !== undefined) assert.equal(connectionOutlivedCaller(err), outlived, `connectionOutlivedCaller for "${err.message}"`);
    return true;
  };
}

function strings(selectors: ReadonlyArray<{ type: string; value: string }>): string[] {
  return selectors.map(formatSelector);
}

/** Real hooks that count what the attestor reads. */
function countingHooks(overrides: Partial<ProcHooks> = {}): { hooks: ProcHooks; counts: Map<string, number>; openDirs: Set<number> } {
  const counts = new Map<string, number>();
  const openDirs = new Set<number>();
  const count = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
  const hooks: ProcHooks = {
    ...systemProcHooks,
    openDirectory: (p) => {
      const fd = systemProcHooks.openDirectory(p);
      openDirs.add(fd);
      return fd;
    },
    closeFile: (fd) => {
      openDirs.delete(fd);
      systemProcHooks.closeFile(fd);
    },
    readText: (p) => (count(p.startsWith('/etc/') ? p : `proc:${path.basename(p)}`), systemProcHooks.readText(p)),
    sha256: (fd) => (count('sha256'), systemProcHooks.sha256(fd)),
    pidfdAlive: (fd) => (count('pidfdAlive'), systemProcHooks.pidfdAlive(fd)),
    ...overrides,
  };
  return { hooks, counts, openDirs };
}

test('a process running as nobody attests as uid 65534 with its names, executable path and sha256', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const selectors = new UnixWorkloadAttestor({ maxHashBytes: BIG }).attest(peer);
  assert.ok(selectors.every((s) => s.type === 'unix'));
  const user = namesFrom('/etc/passwd').get(65534);
  const group = namesFrom('/etc/group').get(65534);
  assert.ok(user !== undefined && group !== undefined, 'this host names uid and gid 65534');
  assert.deepEqual(strings(selectors), [
    'unix:uid:65534',
    `unix:user:${user}`,
    'unix:gid:65534',
    `unix:group:${group}`,
    `unix:path:${NODE_PATH}`,
    `unix:sha256:${NODE_HASH}`,
  ]);
  assert.ok(strings(selectors).includes('unix:user:nobody'));
});

test('a process whose uid and gid differ attests with each id, and each name, in its own selector', async (t) => {
  const listener = await setup(t);
  const users = namesFrom('/etc/passwd');
  const groups = namesFrom('/etc/group');
  // Every other test runs its caller with uid = gid, where a swapped id or a name looked up in the wrong file reads the same.
  const gid = [...groups.keys()].find((g) => g !== 0 && g !== 65534 && groups.get(g) !== groups.get(65534) && users.get(g) !== users.get(65534));
  assert.ok(gid !== undefined && users.has(65534), 'this host names uid 65534 and some group other than 0 and 65534');
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  assert.deepEqual(strings(new UnixWorkloadAttestor({ sha256: false }).attest(peer)), [
    'unix:uid:65534',
    `unix:user:${users.get(65534)}`,
    `unix:gid:${gid}`,
    `unix:group:${groups.get(gid)}`,
    `unix:path:${NODE_PATH}`,
  ]);
});

test('uid and gid selectors are the effective ids, as SPIRE takes them (a setuid program attests as whom it runs as)', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  // What /proc shows for a setuid-65534 program started by uid 4242: real 4242, effective 65534 (stubbed, as making
  // a setuid binary here would need a compiler and a file system that honours the bit).
  const { hooks } = countingHooks({
    readText: (p) => {
      const text = systemProcHooks.readText(p);
      return p.endsWith('/status') ? text.replace(/^Uid:\t\d+/m, 'Uid:\t4242').replace(/^Gid:\t\d+/m, 'Gid:\t4243') : text;
    },
  });
  const selectors = strings(new UnixWorkloadAttestor({ hooks, sha256: false }).attest(peer));
  assert.ok(selectors.includes('unix:uid:65534') && selectors.includes('unix:gid:65534'), selectors.join(' '));
  assert.ok(!selectors.includes('unix:uid:4242') && !selectors.includes('unix:gid:4243'));
  // The names too are the effective ids' (the real ones, 4242 and 4243, have none here).
  const user = namesFrom('/etc/passwd').get(65534);
  const group = namesFrom('/etc/group').get(65534);
  assert.ok(user !== undefined && group !== undefined, 'this host names uid and gid 65534');
  assert.ok(selectors.includes(`unix:user:${user}`) && selectors.includes(`unix:group:${group}`), selectors.join(' '));
});

test('supplementary groups give supplementary_gid and supplementary_group selectors', async (t) => {
  const listener = await setup(t);
  const groups = namesFrom('/etc/group');
  const chosen = [4, 24].filter((gid) => groups.has(gid));
  assert.equal(chosen.length, 2, 'this host names groups 4 and 24');
  const unnamed = 4_000_000;
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534, groups: [...chosen, unnamed] });
  t.after(() => client.stop());
  await once(client.child.stdout!, 'data');
  const { peer } = await listener.next();
  const selectors = strings(new UnixWorkloadAttestor({ sha256: false }).attest(peer));
  assert.deepEqual(
    selectors.filter((s) => s.startsWith('unix:supplementary_')),
    [
      ...chosen.map((gid) => `unix:supplementary_gid:${gid}`),
      `unix:supplementary_gid:${unnamed}`,
      ...chosen.map((gid) => `unix:supplementary_group:${groups.get(gid)}`),
    ],
  );
});

test('a supplementary group that is also the primary group (the kernel lists it in Groups) gets both its supplementary selectors', async (t) => {
  const listener = await setup(t);
  const groups = namesFrom('/etc/group');
  const primary = groups.get(65534);
  assert.ok(primary !== undefined && groups.has(4), 'this host names groups 65534 and 4');
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534, groups: [65534, 4] });
  t.after(() => client.stop());
  await once(client.child.stdout!, 'data');
  const { peer } = await listener.next();
  const selectors = strings(new UnixWorkloadAttestor({ sha256: false }).attest(peer));
  // In the kernel's order (it sorts the list setgroups() gives it).
  assert.deepEqual(selectors.filter((s) => s.startsWith('unix:supplementary_')), [
    'unix:supplementary_gid:4',
    'unix:supplementary_gid:65534',
    `unix:supplementary_group:${groups.get(4)}`,
    `unix:supplementary_group:${primary}`,
  ]);
  assert.ok(selectors.includes(`unix:group:${primary}`));
});

test('repeated attestation uses the caches: the executable is hashed once, passwd and group read once', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const { hooks, counts, openDirs } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, maxHashBytes: BIG });
  const first = attestor.attest(peer);
  for (let i = 0; i < 5; i++) assert.deepEqual(attestor.attest(peer), first);
  assert.equal(counts.get('sha256'), 1);
  assert.equal(counts.get('/etc/passwd'), 1);
  assert.equal(counts.get('/etc/group'), 1);
  // /proc itself is read every time: the process may have changed.
  assert.equal(counts.get('proc:status'), 6);
  // With a pidfd: the first attestation checks it alive before opening /proc/<pid>, after opening it, and after the
  // reads; the five that reuse its selectors (same status, executable and account files) before and after the reads.
  assert.equal(counts.get('pidfdAlive'), 3 + 5 * 2);
  assert.equal(counts.get('proc:stat'), undefined);
  assert.equal(openDirs.size, 0, 'the /proc/<pid> handle is closed');
});

test('a process that exits before attestation fails closed, with or without a pidfd', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  assert.ok(attestor.attest(peer).length > 0, 'attests while the process runs');
  await client.stop();
  assert.throws(() => attestor.attest(peer), isAttestationFailure(/process \d+ (has exited|is gone)/, true));
  assert.throws(() => attestor.attest({ ...peer, pidfd: -1 }), isAttestationFailure(/process \d+ is gone \(ENOENT\)/, true));
});

test('peers the agent cannot pin are refused: pid 0 (other pid namespace) and closed connections', () => {
  const attestor = new UnixWorkloadAttestor();
  const base: TestPeer = { pid: process.pid, uid: 0, gid: 0, pidfd: -1, closed: false };
  assert.throws(() => attestor.attest({ ...base, pid: 0 }), isAttestationFailure(/pid namespace/, false));
  assert.throws(() => attestor.attest({ ...base, closed: true }), isAttestationFailure(/connection has closed/, false));
});

test('ids that differ from the connect-time credentials are refused', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath, { uid: 65534, gid: 65534 });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const { hooks, counts } = countingHooks();
  const attestor = new UnixWorkloadAttestor({ hooks, maxHashBytes: 1 << 30 });
  assert.throws(() => attestor.attest({ ...peer, uid: 0 }), isAttestationFailure(/changed its uid\/gid/, true));
  assert.throws(() => attestor.attest({ ...peer, gid: 0 }), isAttestationFailure(/changed its uid\/gid/, true));
  // Refused before the executable is hashed: the hash is charged to the uid the process has now, not its own.
  assert.equal(counts.get('sha256'), undefined);
});

test('a process whose executable was replaced while it runs (an in-place upgrade) attests without its path; its sha256 is of the image it runs', async (t) => {
  const listener = await setup(t);
  const dir = publicTempDir('meshid-attest-exe-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const exe = path.join(dir, 'envoy');
  // A copy, not a hard link: see the non-UTF-8 test below.
  fs.copyFileSync(NODE_PATH, exe);
  fs.chmodSync(exe, 0o755);
  const client = new ClientProcess(listener.socketPath, { exe: Buffer.from(exe) });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  assert.ok(peer.pidfd >= 0, 'the memo path is exercised only with a pidfd');
  const attestor = new UnixWorkloadAttestor({ maxHashBytes: BIG });
  const before = strings(attestor.attest(peer));
  assert.ok(before.includes(`unix:path:${exe}`), before.join(' '));
  assert.ok(before.includes(`unix:sha256:${NODE_HASH}`), before.join(' '));

  // What a package manager does: write the new version beside it, rename it over the old one.
  fs.copyFileSync('/bin/sleep', `${exe}.new`);
  fs.renameSync(`${exe}.new`, exe);
  assert.equal(fs.readlinkSync(`/proc/${peer.pid}/exe`), `${exe} (deleted)`);
  // A full attestation, the memo's answer for it, and an attestor that never saw the process agree.
  for (const selectors of [attestor.attest(peer), attestor.attest(peer), new UnixWorkloadAttestor({ maxHashBytes: BIG }).attest(peer)]) {
    const values = strings(selectors);
    assert.deepEqual(values.filter((s) => s.startsWith('unix:path:')), [], 'the path now names another file');
    assert.ok(values.includes(`unix:uid:${process.geteuid!()}`), values.join(' '));
    assert.ok(values.includes(`unix:sha256:${NODE_HASH}`), `the digest of what runs, not of the new file: ${values.join(' ')}`);
  }
});

test('the sha256 selector is left out over the size limit or when disabled; the path stays', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath);
  t.after(() => client.stop());
  const { peer } = await listener.next();
  for (const attestor of [new UnixWorkloadAttestor(), new UnixWorkloadAttestor({ sha256: false, maxHashBytes: BIG })]) {
    const selectors = strings(attestor.attest(peer));
    assert.ok(selectors.includes(`unix:path:${NODE_PATH}`));
    assert.ok(!selectors.some((s) => s.startsWith('unix:sha256:')), 'the 94 MiB node binary is over 64 MiB');
  }
});

test('a pid recycled during attestation is detected: pidfd dead after the reads, or start time changed', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath);
  t.after(() => client.stop());
  const { peer } = await listener.next();

  let aliveCalls = 0;
  const diesAfterReads = countingHooks({ pidfdAlive: () => ++aliveCalls < 3 });
  assert.throws(() => new UnixWorkloadAttestor({ hooks: diesAfterReads.hooks }).attest(peer), isAttestationFailure(/has exited/, true));
  assert.equal(aliveCalls, 3);
  assert.equal(diesAfterReads.openDirs.size, 0);

  let statReads = 0;
  const restarted = countingHooks({
    readText: (p) => {
      const text = systemProcHooks.readText(p);
      if (!p.endsWith('/stat')) return text;
      // The second read sees a later start time: a different process now has this pid.
      return ++statReads === 2 ? text.replace(/^(.*\) (?:\S+ ){19})(\d+)/, (_m, head: string, start: string) => `${head}${Number(start) + 1}`) : text;
    },
  });
  const unpinned = { ...peer, pidfd: -1 };
  assert.throws(() => new UnixWorkloadAttestor({ hooks: restarted.hooks }).attest(unpinned), isAttestationFailure(/has exited/, true));
  assert.equal(statReads, 2);
  // Control: without the change the same path attests.
  assert.ok(new UnixWorkloadAttestor().attest(unpinned).length > 0);
});

test('an executable path that is not valid UTF-8 gets no path selector, not a lossy one', async (t) => {
  const listener = await setup(t);
  const dir = publicTempDir('meshid-attest-bytes-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // "node-" + 0xFF: no UTF-8 decoder can read the last byte; a lossy one makes it U+FFFD, as for any other bad byte.
  const exe = Buffer.concat([Buffer.from(`${dir}/node-`), Buffer.from([0xff])]);
  // A copy, not a hard link: linking and unlinking move the ctime of node's own inode, and tests running meanwhile in
  // other files would see the executable they hash change under them (and fail closed, rightly).
  fs.copyFileSync(NODE_PATH, exe);
  fs.chmodSync(exe, 0o755);
  const client = new ClientProcess(listener.socketPath, { exe });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  assert.deepEqual(fs.readlinkSync(`/proc/${peer.pid}/exe`, 'buffer'), exe, 'the client runs from the byte path');
  const attestor = new UnixWorkloadAttestor({ maxHashBytes: BIG });
  for (const selectors of [attestor.attest(peer), attestor.attest(peer)]) {
    const values = strings(selectors);
    assert.deepEqual(values.filter((s) => s.startsWith('unix:path:')), []);
    assert.ok(values.includes(`unix:uid:${process.geteuid!()}`), values.join(' '));
    // The executable is still identified by its content.
    assert.ok(values.includes(`unix:sha256:${NODE_HASH}`), values.join(' '));
  }
  // Deleted, it still attests by its ids and content; the path stays out (the kernel's " (deleted)" mark does not
  // make the bad byte decodable).
  fs.unlinkSync(exe);
  const deleted = strings(attestor.attest(peer));
  assert.deepEqual(deleted.filter((s) => s.startsWith('unix:path:')), []);
  assert.ok(deleted.includes(`unix:sha256:${NODE_HASH}`), deleted.join(' '));
});

test("a caller whose executable keeps changing runs out of its uid's hashing budget; the attestation is unavailable, not slow", async (t) => {
  const listener = await setup(t);
  const dir = publicTempDir('meshid-attest-budget-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const exe = path.join(dir, 'node');
  fs.copyFileSync(NODE_PATH, exe);
  fs.chmodSync(exe, 0o755);
  const client = new ClientProcess(listener.socketPath, { exe: Buffer.from(exe) });
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const size = fs.statSync(exe).size;
  const clock = new FakeClock();
  // Room for two versions of the binary, then one more every 100 s.
  const attestor = new UnixWorkloadAttestor({ maxHashBytes: BIG, hashBudget: { rate: size / 100, burst: 2 * size }, clock });
  const touch = (): void => fs.utimesSync(exe, new Date(), new Date());
  assert.ok(strings(attestor.attest(peer)).includes(`unix:sha256:${NODE_HASH}`));
  touch();
  assert.ok(strings(attestor.attest(peer)).includes(`unix:sha256:${NODE_HASH}`));
  touch();
  assert.throws(() => attestor.attest(peer), isAttestationFailure(new RegExp(`uid ${process.geteuid!()} has had more executable bytes hashed than the agent allows.*retry in 100 s`), false));
  clock.advance(100_000);
  assert.ok(strings(attestor.attest(peer)).includes(`unix:sha256:${NODE_HASH}`));
});

test('a zombie is refused, and unreadable /proc files fail closed', async (t) => {
  const listener = await setup(t);
  const client = new ClientProcess(listener.socketPath);
  t.after(() => client.stop());
  const { peer } = await listener.next();
  const zombie = countingHooks({
    readText: (p) => systemProcHooks.readText(p).replace(/^State:\t.*$/m, 'State:\tZ (zombie)'),
  });
  assert.throws(() => new UnixWorkloadAttestor({ hooks: zombie.hooks }).attest(peer), isAttestationFailure(/has exited/, true));
  const noExe = countingHooks({
    readLink: () => {
      throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    },
  });
  assert.throws(() => new UnixWorkloadAttestor({ hooks: noExe.hooks }).attest(peer), isAttestationFailure(/\/exe \(EACCES\)/, false));
  assert.equal(noExe.openDirs.size, 0);
});

test("subordinate uids of one user (/etc/subuid) hash out of that user's budget; another uid has its own", async (t) => {
  const listener = await setup(t);
  const dir = publicTempDir('meshid-attest-subuid-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'passwd'), 'alice:x:1000:1000::/home/alice:/bin/sh\n');
  fs.writeFileSync(path.join(dir, 'subuid'), 'alice:200000:65536\n');
  const ids = new SubordinateIds(undefined, { subuid: path.join(dir, 'subuid'), passwd: path.join(dir, 'passwd') });
  // A copy of the binary per caller: each is a file version of its own, hashed at its caller's cost.
  const callers = [200_000, 200_001, 300_000].map((uid) => {
    const exe = path.join(dir, `node-${uid}`);
    fs.copyFileSync(NODE_PATH, exe);
    fs.chmodSync(exe, 0o755);
    const client = new ClientProcess(listener.socketPath, { exe: Buffer.from(exe), uid, gid: uid });
    t.after(() => client.stop());
    return uid;
  });
  const peers = new Map<number, TestPeer>();
  for (let i = 0; i < callers.length; i++) {
    const { peer } = await listener.next();
    peers.set(peer.uid, peer);
  }
  const size = fs.statSync(NODE_PATH).size;
  // Room for one binary per budget, and none more for 100 s.
  const attestor = new UnixWorkloadAttestor({ maxHashBytes: BIG, hashBudget: { rate: size / 100, burst: size }, clock: new FakeClock(), accountOf: (uid) => ids.accountOf(uid) });
  assert.ok(strings(attestor.attest(peers.get(200_000)!)).includes(`unix:sha256:${NODE_HASH}`));
  assert.throws(() => attestor.attest(peers.get(200_001)!), isAttestationFailure(/uid 1000 has had more executable bytes hashed than the agent allows/, false));
  assert.ok(strings(attestor.attest(peers.get(300_000)!)).includes(`unix:sha256:${NODE_HASH}`));
});
