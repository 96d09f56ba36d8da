import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError, MeshidError } from '../../../src/common/errors.js';
import { peerAttestation } from '../../../src/agent/endpoints/interceptors.js';
import type { PeerInfo } from '../../../src/agent/attestor/peer-credentials.js';
import { failed, outlived } from '../../../src/agent/attestor/attestation-failure.js';

const PEER = { pid: 4321, uid: 1001, gid: 1001, pidfd: -1, closed: false } as unknown as PeerInfo;

test('peerAttestation attests the process recorded for the call\'s connection', () => {
  const seen: PeerInfo[] = [];
  const attest = peerAttestation({
    peerOf: (p) => (p === 'uds-peer#7' ? PEER : undefined),
    attestor: { attest: (peer) => (seen.push(peer), [{ type: 'unix', value: `uid:${peer.uid}` }]) },
  });
  assert.deepEqual(attest({ getPeer: () => 'uds-peer#7' }), [{ type: 'unix', value: 'uid:1001' }]);
  assert.deepEqual(seen, [PEER]);
});

test('a connection with no recorded peer fails closed with unavailable, without calling the attestor', () => {
  let called = false;
  const attest = peerAttestation({ peerOf: () => undefined, attestor: { attest: () => ((called = true), []) } });
  assert.throws(() => attest({ getPeer: () => 'unix:/tmp/x' }), (e) => isMeshidError(e, 'unavailable') && /workload attestation failed/.test(e.message));
  assert.equal(called, false);
});

test('attestor failures are unavailable: MeshidErrors keep their code, anything else becomes unavailable', () => {
  const throwing = (error: unknown) => peerAttestation({ peerOf: () => PEER, attestor: { attest: () => { throw error; } } });
  assert.throws(() => throwing(new MeshidError('unavailable', 'workload attestation failed: exited'))({ getPeer: () => 'p' }), (e) => isMeshidError(e, 'unavailable'));
  assert.throws(() => throwing(new TypeError('boom'))({ getPeer: () => 'p' }), (e) => isMeshidError(e, 'unavailable'));
});

test('a caller that exited or changed ids gets its connection retired; any other attestation failure keeps it, and the attestor\'s refusal reaches the caller as it was made', () => {
  const retired: string[] = [];
  const throwing = (error: unknown) =>
    peerAttestation({ peerOf: () => PEER, attestor: { attest: () => { throw error; } }, retire: (p) => retired.push(p) });
  const gone = outlived('the process that connected exited');
  assert.throws(() => throwing(gone)({ getPeer: () => 'uds-peer#1' }), (e) => e === gone);
  assert.deepEqual(retired, ['uds-peer#1'], 'the connection outlived its caller: closed, so its holder reconnects');
  const unreadable = failed('could not read /proc/4321/status');
  assert.throws(() => throwing(unreadable)({ getPeer: () => 'uds-peer#2' }), (e) => e === unreadable, 'the reason is the caller\'s to read, unchanged');
  assert.throws(() => throwing(new TypeError('boom'))({ getPeer: () => 'uds-peer#3' }), (e) => isMeshidError(e, 'unavailable'));
  assert.deepEqual(retired, ['uds-peer#1'], 'a failure that need not repeat keeps the connection');
});
