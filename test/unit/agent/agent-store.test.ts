import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { decodeState, encodeState, type StoredState } from '../../../src/agent/storage/stored-state.js';
import { acquireDataDirLock } from '../../../src/agent/storage/data-dir-lock.js';
import { silentLogger } from '../../../src/common/log.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { tempDir } from '../../support/server-kit.js';
import { DAY, entry, HOUR, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

function sampleState(): StoredState {
  const a = entry('store-a', ['unix:uid:1'], { dns_names: ['a.internal'], federates_with: ['other.org'], hint: 'h' });
  const b = entry('store-b', ['unix:uid:2', 'unix:gid:3']);
  const own = fx.bundle();
  return {
    trustDomain: 'example.org',
    revision: 42,
    bundle: own,
    federatedBundles: [{ ...own, trustDomain: 'other.org', jwtAuthorities: [] }],
    entries: [a, b],
    svids: [fx.issue(a), fx.issue(b, HOUR)],
  };
}

function stripKey<T extends { key?: unknown }>(s: T): Omit<T, 'key'> {
  const { key: _key, ...rest } = s;
  return rest;
}

test('the state round-trips: entries, bundles, SVIDs and their keys come back as they were', () => {
  const state = sampleState();
  const { state: back, dropped } = decodeState(encodeState(state), fx.clock.now());
  assert.deepEqual(dropped, []);
  assert.equal(back.revision, 42);
  assert.deepEqual(back.entries, state.entries);
  assert.deepEqual(back.svids, state.svids.map((s) => stripKey(s as typeof s & { key?: unknown })));
  assert.deepEqual(back.bundle.x509Authorities, state.bundle.x509Authorities);
  assert.deepEqual(back.bundle.jwtAuthorities.map((k) => k.kid), state.bundle.jwtAuthorities.map((k) => k.kid));
  assert.equal(back.bundle.sequence, state.bundle.sequence);
  assert.deepEqual(back.federatedBundles.map((b) => b.trustDomain), ['other.org']);
});

test('on restore, SVIDs that can no longer be served are left out with the reason; the rest still serves', () => {
  const state = sampleState();
  const [a, b] = state.entries;
  const foreignKey = generateKeyPair('ec-p256').privateKey.export({ type: 'pkcs8', format: 'der' });
  const doc = JSON.parse(encodeState({ ...state, svids: [state.svids[0]!, { ...state.svids[1]!, privateKey: foreignKey }] }));
  let r = decodeState(JSON.stringify(doc), fx.clock.now());
  assert.deepEqual(r.state.svids.map((s) => s.entryId), [a!.id]);
  assert.match(r.dropped[0]!.reason, /key does not match/);
  r = decodeState(encodeState(state), fx.clock.now() + 2 * HOUR);
  assert.deepEqual(r.state.svids.map((s) => s.entryId), [a!.id], 'the one-hour SVID has expired');
  assert.match(r.dropped[0]!.reason, /expired|not valid/i);
  r = decodeState(encodeState({ ...state, entries: [a!] }), fx.clock.now());
  assert.deepEqual(r.dropped, [{ entryId: b!.id, reason: 'its entry is not in the state' }]);
  r = decodeState(encodeState(state), fx.clock.now() + 2 * DAY);
  assert.deepEqual(r.state.svids, []);
  assert.equal(r.state.entries.length, 2, 'entries are kept: their SVIDs are signed again once the server is back');
});

test('the data dir is 0700, its files 0600, and a damaged state file is moved aside instead of stopping the agent', () => {
  const t = tempDir('meshid-store-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    store.saveState(sampleState());
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(dir, 'state.json')).mode & 0o777, 0o600);
    assert.equal(store.loadState(fx.clock.now())?.entries.length, 2);
    fs.writeFileSync(path.join(dir, 'state.json'), '{"format":1,"trust_domain":"example.org","bundle":');
    assert.equal(store.loadState(fx.clock.now()), undefined);
    assert.ok(fs.existsSync(path.join(dir, 'state.json.unreadable')));
    assert.equal(store.loadIdentity(), undefined);
    fs.writeFileSync(path.join(dir, 'agent-svid.json'), '{"format":1}');
    assert.throws(() => store.loadIdentity(), /agent-svid\.json cannot be used/);
    fs.writeFileSync(path.join(dir, 'agent-svid.json'), JSON.stringify({ format: 99 }));
    assert.throws(() => store.loadIdentity(), /format 99/);
    store.close();
  } finally {
    t.cleanup();
  }
});

test('one agent per data dir: a live owner keeps the lock, a dead one loses it', async () => {
  const t = tempDir('meshid-lock-');
  try {
    const file = path.join(t.dir, 'agent.lock');
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    await once(child, 'spawn');
    fs.writeFileSync(file, `${child.pid}\n`);
    assert.throws(() => acquireDataDirLock(file), new RegExp(`in use by another meshid-agent \\(pid ${child.pid}`));
    child.kill('SIGKILL');
    await once(child, 'exit');
    const release = acquireDataDirLock(file);
    assert.equal(fs.readFileSync(file, 'utf8').trim(), String(process.pid));
    release();
    assert.equal(fs.existsSync(file), false);
    // A lock naming our own pid is ours: an agent restarted as pid 1 in a container finds its old lock.
    fs.writeFileSync(file, `${process.pid}\n`);
    AgentStore.open(t.dir, silentLogger()).close();
    assert.equal(fs.existsSync(file), false);
  } finally {
    t.cleanup();
  }
});
