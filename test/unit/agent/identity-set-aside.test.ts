/**
 * Setting a damaged agent-svid.json aside (AgentStore.setIdentityAside) when the disk gets in the way: a move the
 * file system refuses must not cost an older copy kept aside, and a move done whose directory fsync fails must be
 * reported as what it is (moved, not made durable), not as a move that did not happen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { DAMAGED_COPIES_KEPT } from '../../../src/agent/storage/damaged-copies.js';
import { DamagedIdentity } from '../../../src/agent/storage/damaged-identity.js';
import { silentLogger } from '../../../src/common/log.js';
import { tempDir } from '../../support/server-kit.js';

const DAMAGED = '{"format":1,"svid_chain":["damaged"]}';

/** A store whose agent-svid.json is damaged, and what loadIdentity returned for it. */
function storeWithDamagedIdentity(dir: string): { store: AgentStore; damaged: DamagedIdentity } {
  const store = AgentStore.open(dir, silentLogger());
  fs.writeFileSync(path.join(dir, 'agent-svid.json'), DAMAGED);
  const damaged = store.loadIdentity({ damaged: 'return' });
  assert.ok(damaged instanceof DamagedIdentity);
  return { store, damaged };
}

test('a damaged identity whose move aside fails (chattr +i on it, root only) keeps every copy set aside before: none is removed for a move that did not happen', (t) => {
  const d = tempDir('meshid-identity-aside-eperm-');
  const dir = path.join(d.dir, 'agent');
  const identity = path.join(dir, 'agent-svid.json');
  let immutable = false;
  try {
    const { store, damaged } = storeWithDamagedIdentity(dir);
    // As many copies as are kept: the next one set aside makes room by removing the oldest numbered one.
    const earlier = ['agent-svid.json.damaged', ...Array.from({ length: DAMAGED_COPIES_KEPT - 1 }, (_, i) => `agent-svid.json.damaged.${i + 2}`)];
    for (const name of earlier) fs.writeFileSync(path.join(dir, name), `copy ${name}`, { mode: 0o600 });
    immutable = spawnSync('chattr', ['+i', identity]).status === 0;
    if (!immutable) {
      store.close();
      return t.skip('needs chattr +i (root, a file system with the immutable flag)');
    }
    assert.throws(() => store.setIdentityAside(damaged), /cannot be moved aside in the data dir/);
    spawnSync('chattr', ['-i', identity]);
    immutable = false;
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('agent-svid.json.')).sort(), [...earlier].sort(), 'every earlier copy is still there');
    assert.equal(fs.readFileSync(identity, 'utf8'), DAMAGED, 'and the file is where it was');

    // Once the move works, the bound holds: the first and the newest are kept.
    store.setIdentityAside(damaged);
    const aside = fs.readdirSync(dir).filter((n) => n.startsWith('agent-svid.json.'));
    assert.equal(aside.length, DAMAGED_COPIES_KEPT, aside.join(' '));
    assert.ok(aside.includes('agent-svid.json.damaged'));
    assert.equal(fs.readFileSync(path.join(dir, `agent-svid.json.damaged.${DAMAGED_COPIES_KEPT + 1}`), 'utf8'), DAMAGED);
    store.close();
  } finally {
    if (immutable) spawnSync('chattr', ['-i', identity]);
    d.cleanup();
  }
});

test('a damaged identity moved aside whose directory fsync fails (stubbed fsync: EIO on directories) is refused saying it was moved, where to, that the move may not last, and what to do', () => {
  const d = tempDir('meshid-identity-aside-fsync-');
  const dir = path.join(d.dir, 'agent');
  const real = fs.fsyncSync;
  try {
    const { store, damaged } = storeWithDamagedIdentity(dir);
    fs.fsyncSync = (fd: number): void => {
      if (fs.fstatSync(fd).isDirectory()) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      real(fd);
    };
    let err: unknown;
    try {
      store.setIdentityAside(damaged);
    } catch (e) {
      err = e;
    } finally {
      fs.fsyncSync = real;
    }
    assert.ok(err instanceof Error, 'the start is stopped');
    const movedTo = path.join(dir, 'agent-svid.json.damaged');
    assert.doesNotMatch(err.message, /cannot be moved aside/);
    assert.ok(err.message.includes(`it was moved aside to ${movedTo}, but the move cannot be made durable`), err.message);
    assert.match(err.message, /EIO/);
    assert.match(err.message, /start the agent again with its join token/);
    assert.equal(fs.existsSync(path.join(dir, 'agent-svid.json')), false, 'the file is aside');
    assert.equal(fs.readFileSync(movedTo, 'utf8'), DAMAGED);
    // Started again, the agent finds no identity: it attests with its token.
    assert.equal(store.loadIdentity(), undefined);
    store.close();
  } finally {
    fs.fsyncSync = real;
    d.cleanup();
  }
});
