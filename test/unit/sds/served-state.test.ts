import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IdentitySnapshot, WorkloadSvid } from '../../../src/agent/cache/workload-cache.js';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { resolveSdsOptions } from '../../../src/agent/sds/sds-options.js';
import { servedState } from '../../../src/agent/sds/served-state.js';
import { servedSnapshot } from '../../support/fake-workload-cache.js';

const options = resolveSdsOptions();

function snapshot(): IdentitySnapshot {
  const svid: WorkloadSvid = {
    entryId: 'e1',
    spiffeId: 'spiffe://example.org/a',
    hint: '',
    chain: [Buffer.from('leaf'), Buffer.from('intermediate')],
    privateKey: Buffer.from('key'),
    notBefore: 0,
    notAfter: 1,
    version: 'leaf',
  };
  const bundle: TrustBundle = { trustDomain: 'example.org', x509Authorities: [Buffer.from('root')], jwtAuthorities: [], sequence: 1 };
  return servedSnapshot([svid], bundle, []);
}

const stateOf = (snap: IdentitySnapshot, names: string[]) =>
  servedState(snap, JSON.stringify(['spiffe', false, ...names]), new Set(names), false, 'spiffe', options);

test('streams with the same subscription on the same snapshot share one resolved state', () => {
  const snap = snapshot();
  const a = stateOf(snap, ['default', 'ROOTCA']);
  assert.equal(stateOf(snap, ['default', 'ROOTCA']), a);
  assert.deepEqual([...a.versions.keys()], ['default', 'ROOTCA']);
  assert.notEqual(stateOf(snapshot(), ['default', 'ROOTCA']), a, 'another snapshot: resolved again');
});

test('the memo per snapshot is bounded: a workload cycling through fresh names does not grow it without end', () => {
  const snap = snapshot();
  const first = stateOf(snap, ['default']);
  const hot = stateOf(snap, ['ROOTCA']);
  const recent: Array<[string[], unknown]> = [];
  for (let i = 0; i < 1000; i++) {
    const names = ['default', `fresh-${i}`];
    recent.push([names, stateOf(snap, names)]);
    assert.equal(stateOf(snap, ['ROOTCA']), hot, 'a subscription in use is kept');
  }
  assert.notEqual(stateOf(snap, ['default']), first, 'the least recently used subscription was dropped');
  const [names, kept] = recent.at(-1)!;
  assert.equal(stateOf(snap, names), kept, 'a recent one is still shared');
  // A subscription with a long list is resolved every time rather than kept.
  const long = ['default', ...Array.from({ length: 100 }, (_, i) => `long-name-${i}`)];
  assert.notEqual(stateOf(snap, long), stateOf(snap, long));
  assert.deepEqual([...stateOf(snap, long).versions.keys()], ['default'], 'unknown names resolve to nothing, as before');
});
