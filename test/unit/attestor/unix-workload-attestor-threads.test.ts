/**
 * The unix attestor and a caller whose main thread has exited while a worker thread lives on (the thread-group leader
 * is a zombie): a real C process (test/support/thread-relay.c) connected to a real listener. It is attested from a
 * live thread, and the pid-reuse and id checks hold for it as for any caller.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { UnixWorkloadAttestor } from '../../../src/agent/attestor/unix-workload-attestor.js';
import { connectionOutlivedCaller } from '../../../src/agent/attestor/attestation-failure.js';
import { systemProcHooks, type ProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { MeshidError } from '../../../src/common/errors.js';
import { formatSelector } from '../../../src/common/spiffe/selector.js';
import { PeerListener, publicTempDir, type TestPeer } from '../../support/peer-process.js';
import { buildThreadRelay, ThreadRelay, threadRelaySkip as skip } from '../../support/thread-relay.js';

interface ZombieLeader {
  peer: TestPeer;
  relay: ThreadRelay;
  binary: string;
  digest: string;
}

/** A thread-relay process connected to a listener of the test's, its main thread exited. */
async function zombieLeader(t: { after(fn: () => Promise<void> | void): void }): Promise<ZombieLeader> {
  const dir = publicTempDir('meshid-attest-threads-');
  const listener = await PeerListener.listen(path.join(dir, 'agent.sock'));
  const binary = path.join(dir, 'thread-relay');
  buildThreadRelay(binary);
  const relay = new ThreadRelay(binary, listener.socketPath, path.join(dir, 'relay.sock'), 'main-exits');
  t.after(async () => {
    await relay.stop();
    await listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await relay.ready();
  const { peer } = await listener.next();
  assert.equal(peer.pid, relay.pid);
  assert.ok(peer.pidfd >= 0, 'the pidfd checks are exercised');
  const digest = createHash('sha256').update(fs.readFileSync(binary)).digest('hex');
  return { peer, relay, binary, digest };
}

function failure(reason: RegExp, outlived: boolean): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof MeshidError, `expected a MeshidError, got ${String(err)}`);
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, reason);
    assert.equal(connectionOutlivedCaller(err), outlived, `connectionOutlivedCaller for "${err.message}"`);
    return true;
  };
}

const strings = (selectors: ReadonlyArray<{ type: string; value: string }>): string[] => selectors.map(formatSelector);

/** The tid of the relay's live worker thread. */
function workerTid(pid: number): number {
  const tids = fs.readdirSync(`/proc/${pid}/task`).map(Number).filter((tid) => tid !== pid);
  assert.equal(tids.length, 1, `one worker thread: ${tids.join(' ')}`);
  return tids[0]!;
}

test('a caller whose main thread exited attests from its live thread: ids, path and sha256, with and without a pidfd', { skip }, async (t) => {
  const { peer, relay, binary, digest } = await zombieLeader(t);
  assert.equal(relay.leaderState(), 'Z');
  assert.throws(() => fs.readlinkSync(`/proc/${peer.pid}/exe`), /ENOENT/, 'the leader has no executable any more');
  const expected = ['unix:uid:0', 'unix:user:root', 'unix:gid:0', 'unix:group:root', `unix:path:${binary}`, `unix:sha256:${digest}`];
  const attestor = new UnixWorkloadAttestor();
  // Twice: the second from the memo.
  assert.deepEqual(strings(attestor.attest(peer)), expected);
  assert.deepEqual(strings(attestor.attest(peer)), expected);
  // Without a pidfd the start time of /proc/<pid>/stat (the leader's, which a zombie keeps) brackets the reads.
  assert.deepEqual(strings(new UnixWorkloadAttestor().attest({ ...peer, pidfd: -1 })), expected);
});

test('a caller whose main thread exited is recalled from the memo: a repeated call opens no /proc handle and hashes nothing', { skip }, async (t) => {
  const { peer } = await zombieLeader(t);
  const counts = { openDirectory: 0, sha256: 0 };
  const hooks: ProcHooks = {
    ...systemProcHooks,
    openDirectory: (p) => (counts.openDirectory++, systemProcHooks.openDirectory(p)),
    sha256: (fd) => (counts.sha256++, systemProcHooks.sha256(fd)),
  };
  const attestor = new UnixWorkloadAttestor({ hooks });
  const first = attestor.attest(peer);
  assert.deepEqual(counts, { openDirectory: 1, sha256: 1 });
  assert.equal(attestor.attest(peer), first, 'the remembered selectors, the same frozen array');
  assert.deepEqual(counts, { openDirectory: 1, sha256: 1 }, 'the memo hit: no /proc handle, no hash');
});

test('a zombie-leader caller whose pidfd dies during the reads (its pid recycled) fails closed', { skip }, async (t) => {
  const { peer } = await zombieLeader(t);
  let aliveCalls = 0;
  const hooks: ProcHooks = { ...systemProcHooks, pidfdAlive: () => ++aliveCalls < 3 };
  assert.throws(() => new UnixWorkloadAttestor({ hooks }).attest(peer), failure(/process \d+ has exited/, true));
  assert.equal(aliveCalls, 3, 'checked before, at the open, and after the reads of the thread');
});

test("the live thread's ids are checked against the connect-time credentials, as the leader's would be", { skip }, async (t) => {
  const { peer } = await zombieLeader(t);
  const tid = workerTid(peer.pid);
  // The worker as it would look after a setuid() of its own (stubbed: the C program does not change ids).
  const hooks: ProcHooks = {
    ...systemProcHooks,
    readText: (p) => {
      const text = systemProcHooks.readText(p);
      return p.endsWith(`/task/${tid}/status`) ? text.replace(/^Uid:.*$/m, 'Uid:\t65534\t65534\t65534\t65534') : text;
    },
  };
  let hashed = 0;
  const counting: ProcHooks = { ...hooks, sha256: (fd) => (hashed++, systemProcHooks.sha256(fd)) };
  assert.throws(() => new UnixWorkloadAttestor({ hooks: counting }).attest(peer), failure(/changed its uid\/gid since it connected/, true));
  assert.equal(hashed, 0, 'refused before hashing for the uid it became');
});

test('a caller whose threads have all exited (only the zombie leader is left) fails closed as exited', { skip }, async (t) => {
  const { peer, relay } = await zombieLeader(t);
  const tid = workerTid(peer.pid);
  // The state between the last thread's exit and the parent's wait(), which a test cannot hold still: stubbed.
  const onlyLeader: ProcHooks = { ...systemProcHooks, readDirectory: (p) => systemProcHooks.readDirectory(p).filter((name) => name !== String(tid)) };
  assert.throws(() => new UnixWorkloadAttestor({ hooks: onlyLeader }).attest(peer), failure(/process \d+ has exited/, true));
  const workerZombie: ProcHooks = {
    ...systemProcHooks,
    readText: (p) => {
      const text = systemProcHooks.readText(p);
      return p.endsWith(`/task/${tid}/status`) ? text.replace(/^State:.*$/m, 'State:\tZ (zombie)') : text;
    },
  };
  assert.throws(() => new UnixWorkloadAttestor({ hooks: workerZombie }).attest(peer), failure(/process \d+ has exited/, true));
  // Once the process is gone and reaped, the real /proc and pidfd say so too.
  await relay.stop();
  assert.throws(() => new UnixWorkloadAttestor().attest(peer), failure(/process \d+ has exited/, true));
});
