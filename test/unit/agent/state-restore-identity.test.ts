import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeState, snapshotSeal, type StoredState } from '../../../src/agent/storage/stored-state.js';
import { decodeState } from '../../../src/agent/storage/state-restore.js';
import { entry, HOUR, openAgentFixture, type AgentFixture } from './agent-fixture.js';

// What restoreState checks of each stored SVID before it serves it again, one check per test, sealed and unsealed
// (mutation testing round 2: each of these checks could be dropped with every other test still passing).

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const a = entry('restore-a', ['unix:uid:1']);
const b = entry('restore-b', ['unix:uid:2']);

function stateOf(svids: StoredState['svids'], entries = [a, b]): StoredState {
  return { trustDomain: 'example.org', revision: 7, bundle: fx.bundle(), federatedBundles: [], entries, svids };
}

function unsealed(text: string): string {
  const { sha256: _seal, ...doc } = JSON.parse(text) as Record<string, unknown>;
  return JSON.stringify(doc);
}

test('sealed: an SVID recorded for another SPIFFE ID than its entry now names is not served', () => {
  // The entry's SPIFFE ID changed and its SVID stayed: the sealed path parses no certificate, so the recorded
  // spiffe_id is all that ties the SVID to the identity of the workloads the entry selects.
  const moved = { ...b, spiffeId: 'spiffe://example.org/restore-elsewhere' };
  const text = encodeState(stateOf([fx.issue(a), fx.issue(b)], [a, moved]));
  assert.equal(snapshotSeal(Buffer.from(text)), 'intact');
  const r = decodeState(text, fx.clock.now());
  assert.deepEqual(r.state.svids.map((s) => s.entryId), [a.id]);
  assert.equal(r.dropped[0]?.entryId, b.id);
  assert.match(r.dropped[0]!.reason, /names spiffe:\/\/example\.org\/restore-b, the entry now spiffe:\/\/example\.org\/restore-elsewhere/);
});

test('unsealed: an SVID whose certificate names another SPIFFE ID than its entry is not served, whatever its record says', () => {
  // Written by hand (or by an agent before the seal): the record's spiffe_id agrees with the entry, the certificate
  // does not. Only parsing the leaf tells.
  const other = entry('restore-other', ['unix:uid:9']);
  const svid = { ...fx.issue(other), entryId: b.id, spiffeId: b.spiffeId };
  const text = unsealed(encodeState(stateOf([fx.issue(a), svid])));
  assert.equal(snapshotSeal(Buffer.from(text)), 'absent');
  const r = decodeState(text, fx.clock.now());
  assert.deepEqual(r.state.svids.map((s) => s.entryId), [a.id]);
  assert.equal(r.dropped[0]?.entryId, b.id);
  assert.match(r.dropped[0]!.reason, /certificate names another SPIFFE ID/);
});

test('sealed: an SVID not valid yet at restore (the wall clock stepped back since it was signed) is not served', () => {
  const start = fx.clock.now();
  const early = fx.issue(a);
  fx.clock.advance(2 * HOUR);
  const later = fx.issue(b);
  const text = encodeState(stateOf([early, later]));
  assert.equal(snapshotSeal(Buffer.from(text)), 'intact');
  // An hour after the CA and the first SVID were made, an hour before the second one was.
  const r = decodeState(text, start + HOUR);
  assert.deepEqual(r.state.svids.map((s) => s.entryId), [a.id]);
  assert.equal(r.dropped[0]?.entryId, b.id);
  assert.match(r.dropped[0]!.reason, /not valid before/);
});
