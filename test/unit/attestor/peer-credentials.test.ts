import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ADDON_PATH, peerCredentials } from '../../../src/agent/attestor/peer-credentials.js';
import { packageRoot } from '../../../src/common/paths.js';
import { ClientProcess, PeerListener, publicTempDir } from '../../support/peer-process.js';

const pc = peerCredentials();

test('the addon is loaded from native/peercred/build/Release under the package root', () => {
  assert.equal(ADDON_PATH, path.join(packageRoot, 'native/peercred/build/Release/peercred.node'));
  assert.ok(fs.existsSync(ADDON_PATH));
});

test('peerCred reports the pid, uid and gid of the process that connected', async (t) => {
  const dir = publicTempDir('meshid-peercred-');
  const listener = await PeerListener.listen(path.join(dir, 'p.sock'));
  t.after(async () => {
    await listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  for (const ids of [{ uid: 0, gid: 0 }, { uid: 65534, gid: 65534 }, { uid: 65534, gid: 0 }]) {
    const client = new ClientProcess(listener.socketPath, ids);
    t.after(() => client.stop());
    const { peer } = await listener.next();
    assert.deepEqual({ pid: peer.pid, uid: peer.uid, gid: peer.gid }, { pid: client.pid, ...ids });
    await client.stop();
  }
});

test('peerPidfd pins the peer: alive while it runs, not alive once it has exited and been reaped', async (t) => {
  const dir = publicTempDir('meshid-peercred-');
  const listener = await PeerListener.listen(path.join(dir, 'p.sock'));
  t.after(async () => {
    await listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const client = new ClientProcess(listener.socketPath);
  t.after(() => client.stop());
  const entry = await listener.next();
  assert.ok(entry.peer.pidfd >= 0, 'this kernel offers SO_PEERPIDFD or pidfd_open');
  // The pidfd is a real pidfd for the child: /proc shows its Pid line.
  const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${entry.peer.pidfd}`, 'utf8');
  assert.match(fdinfo, new RegExp(`^Pid:\\s+${client.pid}$`, 'm'));
  assert.equal(pc.pidfdAlive(entry.peer.pidfd), true);
  await client.stop();
  assert.equal(pc.pidfdAlive(entry.peer.pidfd), false);
  listener.release(entry);
});

test('failures are thrown like Node system errors, with code, errno and syscall', () => {
  const file = fs.openSync(process.execPath, 'r');
  try {
    assert.throws(() => pc.peerCred(file), { code: 'ENOTSOCK', errno: 88, syscall: 'getsockopt(SO_PEERCRED)' });
    assert.throws(() => pc.peerPidfd(file), { code: 'ENOTSOCK' });
  } finally {
    fs.closeSync(file);
  }
  // `file` is closed now: closing it again is EBADF.
  assert.throws(() => pc.closeFd(file), { code: 'EBADF', errno: 9, syscall: 'close' });
  assert.throws(() => pc.pidfdAlive(file), { code: 'EBADF', syscall: 'pidfd_send_signal' });
});

test('file descriptors must be non-negative integers', () => {
  for (const bad of [-1, 'x', undefined, 1.5, 2 ** 32 + 3, NaN] as unknown[]) {
    assert.throws(() => pc.peerCred(bad as number), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  }
});
