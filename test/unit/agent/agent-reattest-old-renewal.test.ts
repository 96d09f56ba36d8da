/**
 * The old agent SVID's renewals while the agent attests again. An agent SVID that expires while meshid-server is down
 * is given up for a new attestation (with an unused join token), which waits for the server like everything else; the
 * old identity's renewal timer went on meanwhile, sending Renew with the expired SVID about once a minute for as long
 * as the outage lasted (its failures ignored). Attesting again now stops the old identity's renewals.
 *
 * A real AgentIdentity and ServerConnection on the fixture's FakeClock against a stub server (Sync only: refused as
 * down); Attest and Renew are stubbed to fail as an unreachable server does, and counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AgentIdentity } from '../../../src/agent/client/agent-identity.js';
import type { NodeClient } from '../../../src/agent/client/node-client.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { unavailable } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { tempDir } from '../../support/server-kit.js';
import { until } from '../../support/until.js';
import { openAgentFixture } from './agent-fixture.js';
import { startConnection, stubServer } from './stub-node-server.js';

const AGENT_ID = 'spiffe://example.org/meshid/agent/east/test';

/** Lets the agent's promises and microtasks run (no time passes on its clock). */
async function idle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('an agent attesting again after its SVID expired while the server is down no longer renews the expired SVID (stubbed Attest and Renew: server down)', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const client = await stubServer(t, fx, {
    Sync: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'meshid-server is restarting' }),
  });
  const dir = tempDir('meshid-agent-reattest-renewal-');
  const store = AgentStore.open(path.join(dir.dir, 'data'), silentLogger());
  t.after(() => {
    store.close();
    dir.cleanup();
  });
  const calls = { renew: 0, attest: 0 };
  const downClient = {
    setIdentity: (i: Parameters<NodeClient['setIdentity']>[0]) => client.setIdentity(i),
    async renew(): Promise<Buffer[]> {
      calls.renew++;
      throw unavailable('cannot reach meshid-server');
    },
    async attest(): Promise<never> {
      calls.attest++;
      throw unavailable('cannot reach meshid-server');
    },
  } as unknown as NodeClient;
  // Restored from the data dir, with a join token it has not used: it attests again once its SVID has expired.
  const identity = new AgentIdentity({
    client: downClient, store, clock: fx.clock, log: silentLogger(), joinToken: 'tok-unused-spare', insecureBootstrap: false, trustDomain: 'example.org',
    trustRoots: () => fx.bundle().x509Authorities, onRejected: () => undefined, random: () => 0.5,
  });
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const chain = fx.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: AGENT_ID, ttlMs: 60_000 }).chain;
  identity.restore({ trustDomain: 'example.org', spiffeId: AGENT_ID, datacenter: 'east', chain, privateKey, joinTokenSha256: '' });
  t.after(() => identity.stop());
  const connection = startConnection(t, fx, client, identity);
  await until('the refused open', () => (connection.state === 'disconnected' ? true : undefined));

  fx.clock.set(identity.notAfter()!);
  await until('the attestation after the expiry', () => (connection.state === 'attesting' && calls.attest > 0 ? true : undefined));
  assert.ok(calls.renew > 0, 'the SVID was renewed (in vain) before it expired');
  const renewalsAtExpiry = calls.renew;
  const attestsAtExpiry = calls.attest;

  // Ten minutes of the outage, a second at a time.
  for (let i = 0; i < 600; i++) {
    fx.clock.advance(1000);
    await idle();
  }
  assert.ok(calls.attest > attestsAtExpiry, 'the attestation is retried');
  assert.equal(connection.state, 'attesting');
  assert.equal(calls.renew, renewalsAtExpiry, 'no Renew is sent with the expired SVID given up');
});
