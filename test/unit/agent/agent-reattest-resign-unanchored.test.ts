/**
 * An agent cut off by `ca revoke` of its root (`must re-attest:`) attests again with its configured join token and
 * gets the bundle without that root. The workload SVIDs it holds chain to the revoked root, which no taint list names
 * any more: it re-signs them as soon as the attestation's bundle is in, not only once the new Sync stream's first
 * update brings the bundle again. Against a stub server whose second Sync stream says nothing, as a server that is
 * slow to answer (or refuses) the new stream would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { verifyChain } from '../../../src/common/x509/chain-verification.js';
import { until } from '../../support/until.js';
import { entry, openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubIdentity, stubServer } from './stub-node-server.js';

test('an agent attested again with a bundle that lost the root of its workload SVIDs re-signs them at once, without waiting for the Sync stream\'s first update', async (t) => {
  // The revoked root's CA (`old`) signed what the agent holds; the server now has only `current`'s root, and its own
  // SVID is under it.
  const old = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => old.close());
  const current = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => current.close());
  // The first stream answers at once; the one after the attestation says nothing.
  const { streams, Sync } = recordedSync((i) => i === 0);
  const client = await stubServer(t, current, { Sync });

  const cache = old.cache();
  const e = entry('resign/unanchored', ['unix:uid:1000']);
  cache.apply({ upserts: [e] });
  const held = old.issue(e);
  cache.putSvids([held]);
  const signer = current.signer(cache);

  let agentId = 'spiffe://example.org/meshid/agent/cut-off';
  let attested = false;
  // Only what the connection asks of the agent identity; attest() stands for the configured join token, taken by the
  // server under a new agent ID, with the bundle as it is after the revoke.
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org', spiffeId: agentId }),
    canReattest: () => true,
    attest: () => {
      agentId = 'spiffe://example.org/meshid/agent/new';
      attested = true;
      return Promise.resolve(current.bundle());
    },
  });
  const connection = startConnection(t, current, client, identity, { cache, issuer: { sign: signer.sign, random: () => 0.5 } });
  await until('the first sync', () => (connection.state === 'synced' ? true : undefined));
  assert.deepEqual(signer.calls, [], 'nothing to sign while the held SVID chains to the bundle');

  streams[0]!.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'must re-attest: the agent SVID chains to a revoked root' });
  await until('the attestation and the new Sync stream', () => (attested && streams.length === 2 ? true : undefined));
  const resigned = await until('the held SVID re-signed', () => {
    const svid = cache.svid(e.id);
    return svid !== undefined && svid.version !== held.version ? svid : undefined;
  });
  assert.deepEqual(signer.calls, [[e.id]]);
  assert.equal(connection.state, 'connecting', 'the new stream has sent nothing yet');
  // It verifies against the bundle the attestation brought alone; the one it replaced did not.
  verifyChain(resigned.chain, current.bundle().x509Authorities, current.clock.now(), { requireEndEntity: true });
  assert.throws(() => verifyChain(held.chain, current.bundle().x509Authorities, current.clock.now(), { requireEndEntity: true }));
  assert.notEqual(parseCertificate(resigned.chain[1]!).fingerprintSha256, parseCertificate(held.chain[1]!).fingerprintSha256);
});
