import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { DAMAGED_COPIES_KEPT } from '../../../src/agent/storage/damaged-copies.js';
import { encodeState, snapshotSeal, type StoredState } from '../../../src/agent/storage/stored-state.js';
import { decodeState } from '../../../src/agent/storage/state-restore.js';
import { acquireDataDirLock } from '../../../src/common/data-dir-lock.js';
import { createLogger, silentLogger } from '../../../src/common/log.js';
import { Writable } from 'node:stream';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { createRootCertificate } from '../../../src/common/x509/ca-certificates.js';
import { tempDir } from '../../support/server-kit.js';
import { mountTmpfs } from '../../support/tmpfs.js';
import { opensslSelfSigned } from '../../support/openssl.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { DAY, entry, HOUR, openAgentFixture, type AgentFixture } from './agent-fixture.js';
import { encodeJournalBatch, type JournalBatch } from '../../../src/agent/storage/state-journal.js';
import { entryFromMessage, entryToMessage } from '../../../src/agent/cache/agent-entry.js';

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

test('a data dir in a missing parent is made 0700 and the parents 0755, so a socket beside it (/x/api.sock) stays reachable', () => {
  const { dir: root, cleanup } = tempDir('meshid-agent-parents-');
  const oldMask = process.umask(0o077);
  try {
    const parent = path.join(root, 'x', 'y');
    const dataDir = path.join(parent, 'data');
    const store = AgentStore.open(dataDir, silentLogger());
    store.close();
    assert.equal(fs.statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(parent).mode & 0o777, 0o755);
    assert.equal(fs.statSync(path.dirname(parent)).mode & 0o777, 0o755);
  } finally {
    process.umask(oldMask);
    cleanup();
  }
});

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

test('a state.json of the first agents (no seal, no journal, SVIDs without their recorded validity, serial or inputs) is read: every SVID serves, checked in full', () => {
  const t = tempDir('meshid-store-first-');
  try {
    const dir = path.join(t.dir, 'agent');
    const state = sampleState();
    const { sha256: _seal, journal: _journal, ...doc } = JSON.parse(encodeState(state, 1)) as Record<string, unknown>;
    // As 5cf8651 wrote an SVID: entry_id, spiffe_id, svid_chain and private_key only.
    doc['svids'] = (doc['svids'] as Array<Record<string, unknown>>).map(({ entry_id, spiffe_id, svid_chain, private_key }) => ({ entry_id, spiffe_id, svid_chain, private_key }));
    // And an entry with its creation time in seconds only.
    doc['entries'] = (doc['entries'] as Array<Record<string, unknown>>).map(({ created_at_ms: _ms, ...e }) => e);
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify(doc));
    const store = AgentStore.open(dir, silentLogger());
    const back = store.loadState(fx.clock.now());
    store.close();
    assert.ok(back !== undefined, 'read, not set aside');
    assert.ok(!fs.existsSync(path.join(dir, 'state.json.unreadable')));
    // Validity and serial come from the certificates themselves; inputs were not recorded, so there are none.
    assert.deepEqual(back.svids, state.svids.map(({ inputs: _inputs, ...v }) => stripKey(v as typeof v & { key?: unknown })));
    assert.deepEqual(
      back.entries.map((e) => ({ ...e, createdAt: 0, createdAtExact: false })),
      state.entries.map((e) => ({ ...e, createdAt: 0, createdAtExact: false })),
    );
    assert.deepEqual(back.entries.map((e) => e.createdAt), state.entries.map((e) => Math.floor(e.createdAt / 1000) * 1000));
  } finally {
    t.cleanup();
  }
});

test('on restore, SVIDs that can no longer be served are left out with the reason; the rest still serves', () => {
  const state = sampleState();
  const [a, b] = state.entries;
  const foreignKey = generateKeyPair('ec-p256').privateKey.export({ type: 'pkcs8', format: 'der' });
  // Written by hand, without the agent's seal: every check runs.
  const doc = JSON.parse(encodeState({ ...state, svids: [state.svids[0]!, { ...state.svids[1]!, privateKey: foreignKey }] }));
  delete doc.sha256;
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

test('the snapshot is sealed: one changed byte breaks the seal and every stored SVID is checked in full again', () => {
  const state = sampleState();
  const text = encodeState(state);
  assert.equal(snapshotSeal(Buffer.from(text)), 'intact');
  const { sha256: _seal, ...unsealed } = JSON.parse(text);
  assert.equal(snapshotSeal(Buffer.from(JSON.stringify(unsealed))), 'absent');

  // One bit of the first SVID's signature flipped, the base64 keeping its length: still valid JSON, no longer sealed.
  const b64 = state.svids[0]!.chain[0]!.toString('base64');
  const leaf = Buffer.from(state.svids[0]!.chain[0]!);
  leaf[leaf.length - 8]! ^= 0x01;
  const tampered = text.replace(b64, leaf.toString('base64'));
  assert.notEqual(tampered, text);
  assert.equal(snapshotSeal(Buffer.from(tampered)), 'broken');
  const r = decodeState(tampered, fx.clock.now());
  assert.deepEqual(r.state.svids.map((s) => s.entryId), [state.svids[1]!.entryId]);
  assert.match(r.dropped[0]!.reason, /signature on certificate 0 .* does not verify/);
});

test('an agent store that finds its snapshot changed says so and serves none of it: no check can tell a damaged selector, which would hand an SVID to another workload', () => {
  const t = tempDir('meshid-store-');
  try {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const dir = path.join(t.dir, 'agent');
    const state = sampleState();
    let store = AgentStore.open(dir, silentLogger());
    store.saveState(state);
    store.close();
    const file = path.join(dir, 'state.json');
    // One byte of the second entry's selector: uid 2 becomes uid 7. Valid JSON; every SVID still verifies.
    const text = fs.readFileSync(file, 'utf8');
    const damaged = text.replace('"value":"uid:2"', '"value":"uid:7"');
    assert.notEqual(damaged, text);
    fs.writeFileSync(file, damaged);
    store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    const back = store.loadState(fx.clock.now());
    store.close();
    assert.equal(back, undefined, `nothing of the damaged snapshot is served: ${JSON.stringify(back?.entries.map((e) => e.selectors))}`);
    assert.equal(fs.readFileSync(`${file}.unreadable`, 'utf8'), damaged, 'kept aside for inspection');
    assert.ok(lines.some((l) => l.includes('does not match its checksum') && l.includes(file) && l.includes('starting without it')), lines.join(''));
  } finally {
    t.cleanup();
  }
});

test('a state file damaged again at a later start is kept aside beside the first, which is never replaced; the copies are bounded in count', () => {
  const t = tempDir('meshid-store-');
  try {
    const dir = path.join(t.dir, 'agent');
    const damagedAt = (start: number): string => `{"format":1,"trust_domain":"example.org","damaged at start ${start}":`;
    // One start more than the copies kept: a crash loop on a failing disk.
    for (let start = 1; start <= DAMAGED_COPIES_KEPT + 2; start++) {
      const store = AgentStore.open(dir, silentLogger());
      store.saveState(sampleState());
      fs.writeFileSync(path.join(dir, 'state.json'), damagedAt(start));
      assert.equal(store.loadState(fx.clock.now()), undefined);
      store.close();
    }
    const aside = fs.readdirSync(dir).filter((n) => n.startsWith('state.json.unreadable')).sort();
    assert.equal(aside.length, DAMAGED_COPIES_KEPT, aside.join(' '));
    assert.equal(fs.readFileSync(path.join(dir, 'state.json.unreadable'), 'utf8'), damagedAt(1), 'the first evidence is kept');
    const latest = fs.readFileSync(path.join(dir, `state.json.unreadable.${DAMAGED_COPIES_KEPT + 2}`), 'utf8');
    assert.equal(latest, damagedAt(DAMAGED_COPIES_KEPT + 2), 'and the latest');
    for (const n of aside) assert.equal(fs.statSync(path.join(dir, n)).mode & 0o777, 0o600);
  } finally {
    t.cleanup();
  }
});

test('a bundle root no SPIFFE bundle JWK carries (DSA) is left out of the saved state, logged once naming it wherever it sits in the bundle; the rest saves and restores', () => {
  const t = tempDir('meshid-store-');
  try {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const dir = path.join(t.dir, 'agent');
    const ca = ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'];
    // No input path takes a DSA root any more (checkWritableX509Authority): the state is built directly, as one
    // that got through would be. The Ed25519 root beside it is one the documents carry (RFC 8037 OKP).
    const dsa = opensslSelfSigned({ subject: '/CN=partner DSA root', extensions: ca, serial: '01', days: 2, keyAlgorithm: 'dsa' });
    const ed = opensslSelfSigned({ subject: '/CN=partner Ed25519 root', extensions: ca, serial: '02', days: 2, keyAlgorithm: 'ed25519' });
    const state = sampleState();
    const partner = { ...state.federatedBundles[0]!, x509Authorities: [dsa, ed, ...state.federatedBundles[0]!.x509Authorities] };
    const store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    // Before: both saves threw "unsupported key for a JWK: dsa", and nothing of the state was saved.
    store.saveState({ ...state, federatedBundles: [partner] }); // a snapshot
    store.saveState({ ...state, revision: 43, federatedBundles: [{ ...partner, sequence: partner.sequence + 1 }] }); // a journal batch
    // The same root at another position in the bundle is the same key: not logged again.
    const moved = { ...partner, sequence: partner.sequence + 2, x509Authorities: [ed, dsa, ...state.federatedBundles[0]!.x509Authorities] };
    store.saveState({ ...state, revision: 44, federatedBundles: [moved] });
    store.close();
    const errors = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 50);
    assert.equal(errors.length, 1, lines.join(''));
    assert.equal(errors[0]!['trustDomain'], 'other.org');
    assert.match(String(errors[0]!['problem']), /^X\.509 authority 0 of other\.org \("CN=partner DSA root"\) has a dsa key$/);
    assert.match(String(errors[0]!['msg']), /left out of the saved agent state \(the rest is saved\)/);
    const reopened = AgentStore.open(dir, silentLogger());
    const back = reopened.loadState(fx.clock.now());
    reopened.close();
    assert.equal(back?.revision, 44);
    assert.deepEqual(back?.svids.map((v) => v.entryId), state.svids.map((v) => v.entryId));
    assert.deepEqual(back?.federatedBundles.map((b) => b.x509Authorities), [[ed, ...state.federatedBundles[0]!.x509Authorities]]);
    assert.deepEqual(back?.bundle.x509Authorities, state.bundle.x509Authorities);
  } finally {
    t.cleanup();
  }
});

test('more bundle roots no JWK carries than the log remembers: each of the first 64 is logged once, the rest in one line, and later saves log nothing again', () => {
  const t = tempDir('meshid-store-');
  try {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const ca = ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'];
    const roots = Array.from({ length: 66 }, (_, i) =>
      opensslSelfSigned({ subject: `/CN=partner secp256k1 root ${i}`, extensions: ca, serial: String(i + 1), days: 2, keyAlgorithm: 'secp256k1' }),
    );
    const state = sampleState();
    const partner = { ...state.federatedBundles[0]!, x509Authorities: [...roots, ...state.federatedBundles[0]!.x509Authorities] };
    const store = AgentStore.open(path.join(t.dir, 'agent'), createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    store.saveState({ ...state, federatedBundles: [partner] });
    store.saveState({ ...state, revision: 43, federatedBundles: [{ ...partner, sequence: partner.sequence + 1 }] });
    store.saveState({ ...state, revision: 44, federatedBundles: [{ ...partner, sequence: partner.sequence + 2 }] });
    store.close();
    const errors = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 50);
    // On the old code the memory started over when full: every save logged keys again.
    assert.equal(errors.filter((e) => e['problem'] !== undefined).length, 64, lines.length.toString());
    assert.equal(errors.filter((e) => /the others are not logged/.test(String(e['msg']))).length, 1);
    assert.equal(errors.length, 65);
  } finally {
    t.cleanup();
  }
});

test('a sealed snapshot still drops SVIDs whose CA the stored bundle no longer trusts', async () => {
  const state = sampleState();
  // The bundle holds only a new root of the same name and another key (the trust domain re-rooted).
  const keys = generateKeyPair('ec-p256');
  const otherRoot = await createRootCertificate({ trustDomain: 'example.org', ...keys, notBefore: fx.clock.now() - DAY, notAfter: fx.clock.now() + 30 * DAY });
  const r = decodeState(encodeState({ ...state, bundle: { ...state.bundle, x509Authorities: [otherRoot] } }), fx.clock.now());
  assert.deepEqual(r.state.svids, []);
  assert.equal(r.dropped.length, 2);
  assert.match(r.dropped[0]!.reason, /authority key identifier [0-9a-f]+, but trusted root .* has key identifier/);
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

test('a data dir a newer agent wrote (a rollback) is refused in one line naming both formats and what to do, and every file is left as it was', () => {
  const t = tempDir('meshid-store-newer-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    // What a future agent of state format 2 leaves: a snapshot naming its journal, the journal, and its identity.
    const state = JSON.parse(encodeState(sampleState(), 3)) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ ...state, format: 2 }));
    fs.writeFileSync(path.join(dir, 'state.3.journal'), 'a change set of a kind this agent does not know\n');
    fs.writeFileSync(path.join(dir, 'agent-svid.json'), JSON.stringify({ format: 2, spiffe_id: 'spiffe://example.org/meshid/agent/east/x' }));
    const files = (): Record<string, string> => Object.fromEntries(fs.readdirSync(dir).sort().map((n) => [n, fs.readFileSync(path.join(dir, n), 'latin1')]));
    const before = files();
    const refusal = (file: string) => (err: unknown): boolean => {
      assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
      assert.doesNotMatch(err.message, /\n/);
      assert.match(err.message, new RegExp(`^${path.join(dir, file).replace(/[.]/g, '\\.')} cannot be read: .* has format 2, written by a newer meshid-agent; this one \\(.+\\) reads format 1\\. `));
      assert.match(err.message, /Run that newer meshid-agent \(or a later one\) on .*restore a copy of the data dir taken before the upgrade/);
      return true;
    };
    assert.throws(() => store.loadIdentity(), refusal('agent-svid.json'));
    assert.throws(() => store.loadState(fx.clock.now()), refusal('state.json'));
    assert.deepEqual(files(), before, 'nothing moved aside, removed or rewritten');
    store.close();
  } finally {
    t.cleanup();
  }
});

/** A store in `dir` whose log lines are kept, parsed, in `logged`. */
function openLogging(dir: string): { store: AgentStore; logged: Array<Record<string, unknown>> } {
  const logged: Array<Record<string, unknown>> = [];
  const destination = new Writable({ write: (chunk, _enc, done) => (logged.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) });
  return { store: AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination })), logged };
}

test('a state file without a seal whose fields have the wrong type is moved aside like any other damage, not a TypeError that stops the agent', () => {
  const t = tempDir('meshid-store-types-');
  try {
    const dir = path.join(t.dir, 'agent');
    const { store, logged } = openLogging(dir);
    const damages: Array<[string, (doc: Record<string, any>) => void, RegExp]> = [
      ['entries null', (doc) => (doc['entries'] = null), /"entries" is null, not a list/],
      ['svids a string', (doc) => (doc['svids'] = 'x'), /"svids" is a string, not a list/],
      ['an entry null', (doc) => (doc['entries'] = [null]), /wrong type/],
      ['selectors a number', (doc) => (doc['entries'][0].selectors = 5), /wrong type/],
      ['dns_names a number', (doc) => (doc['entries'][0].dns_names = 5), /wrong type/],
      // Read before as the number 5: an entry whose id was no string, apart from its SVID (keyed "5").
      ['an entry id a number', (doc) => (doc['entries'][0].id = 5), /wrong type \(an entry's id is a number \(5\), not a string\)/],
    ];
    for (const [what, damage, reason] of damages) {
      const doc = JSON.parse(encodeState(sampleState()));
      delete doc.sha256;
      damage(doc);
      fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify(doc));
      logged.length = 0;
      assert.equal(store.loadState(fx.clock.now()), undefined, what);
      assert.ok(!fs.existsSync(path.join(dir, 'state.json')), what);
      const line = logged.find((l) => l['msg'] === 'the stored state cannot be read; starting without it');
      assert.ok(line !== undefined, `${what}: ${JSON.stringify(logged)}`);
      assert.match(String((line['err'] as Record<string, unknown>)['message']), reason, what);
      assert.match(String(line['movedTo']), /state\.json\.unreadable/, what);
    }
    store.close();
  } finally {
    t.cleanup();
  }
});

test('a journal change set whose entry id is not a string is moved aside with the snapshot it continues, as the same fault in state.json is', () => {
  const t = tempDir('meshid-store-journal-types-');
  try {
    const dir = path.join(t.dir, 'agent');
    const { store, logged } = openLogging(dir);
    const state = sampleState();
    store.saveState(state); // a snapshot
    const changed = entryFromMessage({ ...entryToMessage(state.entries[0]!), revision: 2 });
    store.saveState({ ...state, revision: 43, entries: [changed, state.entries[1]!] }); // a journal batch
    const journal = fs.readdirSync(dir).find((n) => /^state\.\d+\.journal$/.test(n));
    assert.ok(journal !== undefined, fs.readdirSync(dir).join());
    // The batch as a hand edit leaves it: its id a number, its checksum made to match (a CRC is no seal).
    const [line] = fs.readFileSync(path.join(dir, journal), 'utf8').split('\n');
    const batch = JSON.parse(line!.slice(9)) as { entries: Array<Record<string, unknown>> };
    assert.equal(batch.entries.length, 1, 'the batch holds the changed entry');
    batch.entries[0]!['id'] = 5;
    fs.writeFileSync(path.join(dir, journal), encodeJournalBatch(batch as JournalBatch));
    assert.equal(store.loadState(fx.clock.now()), undefined, 'not loaded with a numeric entry id');
    const moved = logged.find((l) => String(l['msg']).startsWith('the state journal holds a change set that passes its checksum but cannot be applied'));
    assert.ok(moved !== undefined, JSON.stringify(logged));
    assert.match(String((moved['err'] as Record<string, unknown>)['message']), /wrong type \(an entry's id is a number \(5\), not a string\)/);
    assert.match(String(moved['snapshotMovedTo']), /state\.json\.unreadable$/);
    assert.ok(!fs.existsSync(path.join(dir, 'state.json')), 'moved aside');
    store.close();
  } finally {
    t.cleanup();
  }
});

test('one agent per data dir: a live owner keeps the lock, a killed one loses it, an old agent\'s pid file is respected', async (ctx) => {
  const t = tempDir('meshid-lock-');
  try {
    const file = path.join(t.dir, 'agent.lock');
    const lockModule = new URL('../../../src/common/data-dir-lock.js', import.meta.url).href;
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `const m = await import(${JSON.stringify(lockModule)}); m.acquireDataDirLock(${JSON.stringify(file)}, 'meshid-agent'); console.log('held'); setTimeout(() => {}, 60000);`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    // Killed however the test ends: a failed assertion would otherwise leave it, and this file, running for a minute.
    ctx.after(() => void holder.kill('SIGKILL'));
    await once(holder.stdout!, 'data');
    assert.throws(() => acquireDataDirLock(file, 'meshid-agent'), /in use by another meshid-agent \(it holds .*agent\.lock\)/);
    assert.throws(() => AgentStore.open(t.dir, silentLogger()), /in use by another meshid-agent/);
    // SIGKILL: no exit handler runs, and the kernel still drops the lock.
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    const store = AgentStore.open(t.dir, silentLogger());
    // Held within this process too: a second open in the same process is refused.
    assert.throws(() => AgentStore.open(t.dir, silentLogger()), /in use by another meshid-agent/);
    store.close();
    AgentStore.open(t.dir, silentLogger()).close();
    // Earlier agents kept a pid file under the same name: it is replaced once its agent is gone, never under it.
    const old = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    ctx.after(() => void old.kill('SIGKILL'));
    await once(old, 'spawn');
    fs.writeFileSync(file, `${old.pid}\n`);
    assert.throws(() => AgentStore.open(t.dir, silentLogger()), new RegExp(`in use by another meshid-agent \\(pid ${old.pid}, lock `));
    old.kill('SIGKILL');
    await once(old, 'exit');
    AgentStore.open(t.dir, silentLogger()).close();
    assert.equal(fs.readFileSync(file).subarray(0, 15).toString('latin1'), 'SQLite format 3');
  } finally {
    t.cleanup();
  }
});

/** Runs `fn` with write(2) returning short once (a filling disk; stubbed: it cannot be made on demand here). */
function withOneShortWrite<T>(fn: () => T): T {
  const real = fs.writeSync;
  let shortened = false;
  (fs as { writeSync: unknown }).writeSync = (fd: number, data: string | Buffer, ...rest: unknown[]): number => {
    if (shortened) return (real as (...a: unknown[]) => number)(fd, data, ...rest);
    shortened = true;
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const offset = typeof rest[0] === 'number' ? rest[0] : 0;
    return (real as (...a: unknown[]) => number)(fd, buf, offset, Math.max(1, Math.floor((buf.length - offset) / 2)));
  };
  try {
    return fn();
  } finally {
    (fs as { writeSync: unknown }).writeSync = real;
  }
}

test('a short write is continued: neither a snapshot nor a journal batch is left torn (write(2) stubbed)', () => {
  const t = tempDir('meshid-short-write-');
  try {
    const state = sampleState();
    const snapshotDir = path.join(t.dir, 'snapshot');
    let store = AgentStore.open(snapshotDir, silentLogger());
    withOneShortWrite(() => store.saveState(state));
    store.close();
    store = AgentStore.open(snapshotDir, silentLogger());
    assert.equal(store.loadState(fx.clock.now())?.svids.length, state.svids.length);
    store.close();
    assert.ok(!fs.readdirSync(snapshotDir).some((n) => n.includes('unreadable')), 'the snapshot was not moved aside');

    const journalDir = path.join(t.dir, 'journal');
    store = AgentStore.open(journalDir, silentLogger());
    store.saveState(state);
    withOneShortWrite(() => store.saveState({ ...state, revision: state.revision + 1, entries: state.entries.slice(0, 1), svids: state.svids.slice(0, 1) }));
    store.close();
    store = AgentStore.open(journalDir, silentLogger());
    const back = store.loadState(fx.clock.now());
    store.close();
    assert.equal(back?.revision, state.revision + 1, 'the journal batch was restored whole');
    assert.equal(back?.entries.length, 1);
  } finally {
    t.cleanup();
  }
});

test('a data dir on a read-only file system is refused at open, naming it and the cause (a real read-only tmpfs)', (t) => {
  const dir = mountTmpfs(t, '256k', { readOnly: true });
  if (dir === undefined) return;
  assert.throws(() => AgentStore.open(dir, silentLogger()), (err: unknown) => {
    assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
    assert.match(err.message, new RegExp(`^cannot use the data dir ${dir}: the file system is read-only\\. `));
    return true;
  });
});
