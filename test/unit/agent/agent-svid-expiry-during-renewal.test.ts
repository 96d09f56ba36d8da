/**
 * The agent SVID's expiry while a Renew sent before its notAfter is still out (the agent not synced: its stream lost or
 * not yet open). Giving the identity up then (reattest-required, or attesting with a spare token) made the agent drop
 * the renewed SVID when it came: the expiry now waits for that renewal's answer (AgentIdentity.renewalInFlight,
 * bounded by the Renew's deadline). On both paths that find the SVID expired: the expiry timer, and a reconnect.
 *
 * A real AgentIdentity and ServerConnection on the fixture's FakeClock against a stub server (Sync only); the Renew is
 * stubbed so that the test holds its answer back until after the expiry, which needs that exact moment.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AgentIdentity } from '../../../src/agent/client/agent-identity.js';
import type { NodeClient } from '../../../src/agent/client/node-client.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { silentLogger } from '../../../src/common/log.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { tempDir } from '../../support/server-kit.js';
import { until } from '../../support/until.js';
import { openAgentFixture, type AgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubServer } from './stub-node-server.js';

const AGENT_ID = 'spiffe://example.org/meshid/agent/east/test';
const TTL_MS = 60_000;

/** Lets the agent's promises and microtasks run (no time passes on its clock). */
async function idle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

/**
 * A restored agent identity (no join token) whose Renew answers only when `release` is called, signed when it was
 * sent. `client` is the agent's real client of the stub server, which the identity moves to each new SVID.
 */
function heldRenewalIdentity(t: TestContext, fx: AgentFixture, client: NodeClient): { identity: AgentIdentity; release: () => void; notAfter: number } {
  const dir = tempDir('meshid-agent-expiry-renewal-');
  const store = AgentStore.open(path.join(dir.dir, 'data'), silentLogger());
  t.after(() => {
    store.close();
    dir.cleanup();
  });
  let release!: () => void;
  const answer = new Promise<void>((resolve) => (release = resolve));
  const renewingClient = {
    setIdentity: (i: Parameters<NodeClient['setIdentity']>[0]) => client.setIdentity(i),
    async renew(csr: Buffer): Promise<Buffer[]> {
      const chain = fx.ca.signX509Svid({ datacenter: 'east', publicKey: parseCsr(csr).publicKey, spiffeId: AGENT_ID, ttlMs: 3_600_000 }).chain;
      await answer;
      return chain;
    },
  } as unknown as NodeClient;
  const identity = new AgentIdentity({
    client: renewingClient, store, clock: fx.clock, log: silentLogger(), joinToken: undefined, insecureBootstrap: false, trustDomain: 'example.org',
    trustRoots: () => fx.bundle().x509Authorities, onRejected: () => undefined, random: () => 0.5,
  });
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const first = fx.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: AGENT_ID, ttlMs: TTL_MS }).chain;
  identity.restore({ trustDomain: 'example.org', spiffeId: AGENT_ID, datacenter: 'east', chain: first, privateKey, joinTokenSha256: '' });
  t.after(() => identity.stop());
  return { identity, release, notAfter: identity.notAfter()! };
}

test("the expiry timer of an agent SVID whose Renew (stub server down for Sync) is still out waits for that renewal's answer, and keeps the renewed SVID", async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const client = await stubServer(t, fx, {
    Sync: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'meshid-server is restarting' }),
  });
  const { identity, release, notAfter } = heldRenewalIdentity(t, fx, client);
  const connection = startConnection(t, fx, client, identity);
  await until('the refused open', () => (connection.state === 'disconnected' ? true : undefined));

  const renewal = identity.renew();
  await idle();
  fx.clock.set(notAfter);
  await idle();
  assert.notEqual(connection.state, 'reattest-required', 'the renewal sent before the expiry has not answered yet');

  release();
  await renewal;
  await idle();
  assert.ok(identity.notAfter()! > notAfter, 'the renewed SVID is in use');
  assert.notEqual(connection.state, 'reattest-required', connection.lastErrorMessage);
});

test("a reconnect that finds the agent SVID expired while its Renew (sent before notAfter) is still out waits for that renewal's answer, then opens the Sync stream with the renewed SVID", async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { streams, Sync } = recordedSync((i) => i === 0);
  const client = await stubServer(t, fx, { Sync });
  const { identity, release, notAfter } = heldRenewalIdentity(t, fx, client);
  const connection = startConnection(t, fx, client, identity);
  await until('the first sync', () => (connection.state === 'synced' ? true : undefined));

  const renewal = identity.renew();
  await idle();
  // Synced at the expiry: the timer leaves it to the server, which ends the stream (node-sync.ts).
  fx.clock.set(notAfter);
  streams[0]!.emit('error', { code: grpc.status.UNAVAILABLE, details: `agent ${AGENT_ID}'s SVID expired: this Sync stream, opened with it, ends; reconnect with the current SVID` });
  await until('the stream lost', () => (connection.state === 'disconnected' ? true : undefined));
  fx.clock.advance(1000);
  await idle();
  assert.notEqual(connection.state, 'reattest-required', 'the renewal sent before the expiry has not answered yet');
  assert.equal(streams.length, 1, 'no stream opened with an expired SVID');

  release();
  await renewal;
  await until('the stream opened with the renewed SVID', () => (streams.length === 2 ? true : undefined));
  assert.ok(identity.notAfter()! > notAfter, 'the renewed SVID is in use');
  assert.equal(connection.state, 'connecting');
});
