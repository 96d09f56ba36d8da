import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AttestationMemo, type AttestationInputs } from '../../../src/agent/attestor/attestation-memo.js';

const INPUTS: AttestationInputs = {
  status: { state: 'S', realUid: 1000, effectiveUid: 1000, realGid: 1000, effectiveGid: 1000, groups: [4, 27] },
  exe: '/usr/bin/app',
  exeFile: { dev: 2049n, ino: 1234n, mtimeNs: 1_700_000_000_000_000_000n, ctimeNs: 1_700_000_000_000_000_000n, size: 4096n },
  accountsGeneration: 1,
};
const SELECTORS = [
  { type: 'unix', value: 'uid:1000' },
  { type: 'unix', value: 'path:/usr/bin/app' },
];

test('the same inputs give back the remembered selectors, frozen and equal to what was stored', () => {
  const memo = new AttestationMemo();
  assert.equal(memo.get(INPUTS), undefined);
  const kept = memo.set(INPUTS, SELECTORS);
  assert.deepEqual(kept, SELECTORS);
  const hit = memo.get({ ...INPUTS, status: { ...INPUTS.status, groups: [4, 27] } });
  assert.equal(hit, kept);
  assert.ok(Object.isFrozen(hit) && hit.every((s) => Object.isFrozen(s)), 'callers cannot change what others get');
  SELECTORS[0]!.value = 'uid:0';
  assert.equal(memo.get(INPUTS)![0]!.value, 'uid:1000', 'a copy is kept, not the caller array');
  SELECTORS[0]!.value = 'uid:1000';
});

test('any input that differs misses: real ids, groups, executable path or version, account files', () => {
  const memo = new AttestationMemo();
  memo.set(INPUTS, SELECTORS);
  const variants: AttestationInputs[] = [
    { ...INPUTS, status: { ...INPUTS.status, realUid: 0 } },
    { ...INPUTS, status: { ...INPUTS.status, realGid: 0 } },
    { ...INPUTS, status: { ...INPUTS.status, effectiveUid: 0 } },
    { ...INPUTS, status: { ...INPUTS.status, effectiveGid: 0 } },
    { ...INPUTS, status: { ...INPUTS.status, groups: [4] } },
    { ...INPUTS, status: { ...INPUTS.status, groups: [4, 27, 0] } },
    { ...INPUTS, status: { ...INPUTS.status, groups: [42, 7] } },
    { ...INPUTS, exe: '/usr/bin/app2' },
    { ...INPUTS, exeFile: { ...INPUTS.exeFile, ino: 1235n } },
    { ...INPUTS, exeFile: { ...INPUTS.exeFile, dev: 2050n } },
    { ...INPUTS, exeFile: { ...INPUTS.exeFile, mtimeNs: INPUTS.exeFile.mtimeNs + 1n } },
    { ...INPUTS, exeFile: { ...INPUTS.exeFile, size: 4097n } },
    { ...INPUTS, accountsGeneration: 2 },
  ];
  for (const v of variants) assert.equal(memo.get(v), undefined, JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x)));
  assert.ok(memo.get(INPUTS) !== undefined);
});

test('the memo is bounded: the least recently used entry is dropped first', () => {
  const memo = new AttestationMemo(2);
  const a = { ...INPUTS, exe: '/a' };
  const b = { ...INPUTS, exe: '/b' };
  const c = { ...INPUTS, exe: '/c' };
  memo.set(a, SELECTORS);
  memo.set(b, SELECTORS);
  assert.ok(memo.get(a) !== undefined, 'a is now the most recently used');
  memo.set(c, SELECTORS);
  assert.equal(memo.size, 2);
  assert.equal(memo.get(b), undefined);
  assert.ok(memo.get(a) !== undefined && memo.get(c) !== undefined);
  assert.throws(() => new AttestationMemo(0), /maxEntries/);
});
