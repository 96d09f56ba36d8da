import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import type { AttestedAgent } from '../../../src/server/datastore/datastore.js';
import { agentsCutOffByRevoking, revokeBeforePartnersPolled, revokeWouldCutOff } from '../../../src/server/ca/root-revoke-guard.js';

const NOW = 1_000_000;
const agent = (n: string, overrides: Partial<AttestedAgent> = {}): AttestedAgent => ({
  spiffeId: `spiffe://example.org/meshid/agent/east/${n}`,
  datacenter: 'east',
  selectors: [],
  certSerial: `${n}-s1`,
  certNotAfter: NOW + 3_600_000,
  certIssuerId: 'int-new',
  attestedAt: 0,
  updatedAt: 0,
  banned: false,
  ...overrides,
});

test('revoking a root cuts off live agents still signed under it, of unknown signer, or not yet on their renewed SVID', () => {
  const under = new Set(['int-old-east', 'int-old-west']);
  const agents = [
    agent('moved'),
    agent('on-old', { certIssuerId: 'int-old-west' }),
    agent('unknown', { certIssuerId: undefined }),
    agent('renewal-unused', { previousCertSerial: 'renewal-unused-s0' }),
    // Neither can use the server anyway.
    agent('banned', { certIssuerId: 'int-old-east', banned: true }),
    agent('expired', { certIssuerId: 'int-old-east', certNotAfter: NOW }),
  ];
  assert.deepEqual(
    agentsCutOffByRevoking(agents, under, NOW).map((a) => [a.spiffeId.split('/').pop(), a.reason]),
    [
      ['on-old', 'still on this root'],
      ['unknown', 'signer not recorded: not renewed since the upgrade'],
      ['renewal-unused', 'renewed SVID not used yet'],
    ],
  );
  assert.deepEqual(agentsCutOffByRevoking([agent('moved')], under, NOW), []);
});

test('the refusal is FAILED_PRECONDITION naming five agents, the count of the rest, and the ways on', () => {
  const cutOff = Array.from({ length: 7 }, (_, i) => ({ spiffeId: `spiffe://example.org/meshid/agent/east/a${i}`, reason: 'still on this root' as const }));
  const err = revokeWouldCutOff(['root-1'], cutOff);
  assert.ok(isMeshidError(err, 'failed_precondition'));
  assert.match(err.message, /^revoking root root-1 now would cut off 7 agent\(s\)/);
  assert.match(err.message, /a4 \(still on this root\) and 2 more\./);
  assert.doesNotMatch(err.message, /a5/);
  assert.match(err.message, /meshid-server agent evict/);
  assert.match(err.message, /--force/);
  const five = revokeWouldCutOff(['root-1'], cutOff.slice(0, 5)).message;
  assert.match(five, /a4 \(still on this root\)\. /, 'exactly five: all named, no count of the rest');
  assert.doesNotMatch(five, /more/);
});

test('the refusal of a group names its roots as roots, and the agents as on one of them', () => {
  const err = revokeWouldCutOff(['root-1', 'root-2'], [{ spiffeId: 'spiffe://example.org/meshid/agent/east/a0', reason: 'still on this root' }]);
  assert.match(err.message, /^revoking roots root-1, root-2 now would cut off 1 agent\(s\) whose SVID still chains to one of them or is not known to have moved off them:/);
});

test('revoking a root within one refresh hint of the active root\'s publication is refused only when partners authenticate the endpoint by the server SVID', () => {
  const HINT = 300_000;
  const active = { id: 'root-new', createdAt: NOW - 60_000 };
  const refusal = revokeBeforePartnersPolled(['root-old'], active, HINT, NOW);
  assert.ok(refusal !== undefined && isMeshidError(refusal, 'failed_precondition'));
  assert.equal(
    refusal.message,
    "revoking root root-old now would move the bundle endpoint's SVID onto root root-new, published 1m ago, less than one refresh hint (5m): " +
      'federation partners that have not polled since could not authenticate the endpoint any more, and their operators would have to seed ' +
      `this trust domain's bundle again by hand. Wait until ${new Date(NOW + 240_000).toISOString()}, or revoke anyway with --force`,
  );
  assert.match(revokeBeforePartnersPolled(['a', 'b'], active, HINT, NOW)!.message, /^revoking roots a, b now/);
  // One hint after the publication, every partner polling as asked has the root.
  assert.equal(revokeBeforePartnersPolled(['root-old'], active, HINT, active.createdAt + HINT), undefined);
  // No bundle endpoint, or one under a web PKI certificate: no partner relies on the server SVID.
  assert.equal(revokeBeforePartnersPolled(['root-old'], active, undefined, NOW), undefined);
  assert.equal(revokeBeforePartnersPolled(['root-old'], undefined, HINT, NOW), undefined);
});
