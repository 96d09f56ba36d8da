import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { attestCall } from '../../../src/server/api/node-attest.js';
import type { NodeContext } from '../../../src/server/api/node-context.js';
import type { Datastore } from '../../../src/server/datastore/datastore.js';
import { sels, withDatastore, type DatastoreFixture } from '../datastore/fixture.js';

type Answer = { spiffe_id: string; datacenter: string };
type Handler = (call: { request: unknown; getPeer(): string }, cb: (err: ServiceError | null, res?: Answer) => void) => void;

const PREFIX = 'spiffe://example.org/meshid/agent/';

/**
 * The agent API's Attest over a real datastore, serving east and west, with the CA stubbed: what is under test is what
 * the server records and answers for a join token, not the SVID (agent-api.test.ts signs real ones).
 */
async function withAttest(
  fn: (t: DatastoreFixture & { attest: (token: string) => Promise<{ err: ServiceError | null; res?: Answer }>; signed: Array<{ id: string; dc: string }> }) => Promise<void>,
  wrap: (ds: Datastore) => Datastore = (ds) => ds,
): Promise<void> {
  await withDatastore(async (fx) => {
    const signed: Array<{ id: string; dc: string }> = [];
    const ctx = {
      deps: {
        ds: wrap(fx.ds),
        ca: { bundle: () => ({ trustDomain: 'example.org', x509Authorities: [], jwtAuthorities: [], sequence: 1 }) },
        clock: fx.clock,
        log: silentLogger(),
        datacenters: ['east', 'west'],
      },
      agentPrefix: PREFIX,
      signAgentSvid: (id: string, dc: string) => {
        signed.push({ id, dc });
        return { chain: [Buffer.from('leaf')], notAfter: fx.clock.now() + 3_600_000, serial: `0${signed.length}`, issuerId: 'int-1' };
      },
    } as unknown as NodeContext;
    const handler = attestCall(ctx) as unknown as Handler;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = await createCsr(privateKey, publicKey);
    const attest = (token: string) =>
      new Promise<{ err: ServiceError | null; res?: Answer }>((resolve) => handler({ request: { join_token: token, csr }, getPeer: () => '127.0.0.1:5000' }, (err, res) => resolve({ err, res })));
    await fn({ ...fx, attest, signed });
  });
}

test("an agent attested with a join token gets an ID under the token's datacenter, and its record the datacenter selector and the token's own", async () => {
  await withAttest(async ({ ds, clock, attest, signed }) => {
    await ds.createJoinToken({ token: 't-west', datacenter: 'west', selectors: sels('unix:uid:0'), expiresAt: clock.now() + 60_000, createdAt: clock.now() });
    const { err, res } = await attest('t-west');
    assert.equal(err, null);
    assert.equal(res!.datacenter, 'west');
    assert.match(res!.spiffe_id, /^spiffe:\/\/example\.org\/meshid\/agent\/west\/[0-9a-f-]{36}$/);
    assert.deepEqual(signed, [{ id: res!.spiffe_id, dc: 'west' }]);
    const agent = (await ds.getAgent(res!.spiffe_id))!;
    assert.deepEqual([agent.datacenter, agent.banned, agent.certSerial], ['west', false, '01']);
    assert.deepEqual(agent.selectors, sels('meshid:datacenter:west', 'unix:uid:0'));
    assert.equal(await ds.findJoinToken('t-west'), undefined, 'the token is spent');
  });
});

test('a join token bound to a datacenter the server no longer serves is refused, and spent', async () => {
  await withAttest(async ({ ds, clock, attest, signed }) => {
    await ds.createJoinToken({ token: 't-north', datacenter: 'north', selectors: [], expiresAt: clock.now() + 60_000, createdAt: clock.now() });
    const { err } = await attest('t-north');
    assert.equal(err?.code, status.PERMISSION_DENIED);
    assert.match(err!.details, /bound to datacenter "north", which this server no longer serves/);
    assert.deepEqual(signed, []);
    assert.deepEqual(await ds.listAgents(), []);
    assert.equal(await ds.findJoinToken('t-north'), undefined);
  });
});

test('a join token used up between its look-up and the agent record (a revoke racing the attestation) is PERMISSION_DENIED, as any spent token', async () => {
  await withAttest(
    async ({ ds, clock, attest }) => {
      await ds.createJoinToken({ token: 't-raced', datacenter: 'east', selectors: [], expiresAt: clock.now() + 60_000, createdAt: clock.now() });
      const { err } = await attest('t-raced');
      assert.equal(err?.code, status.PERMISSION_DENIED);
      assert.match(err!.details, /join token is unknown, already used or revoked/);
      assert.deepEqual(await ds.listAgents(), []);
    },
    // The revoke commits right after Attest read the token.
    (ds) => Object.assign(Object.create(ds) as Datastore, {
      findJoinToken: async (token: string) => {
        const found = await ds.findJoinToken(token);
        await ds.consumeJoinToken(token);
        return found;
      },
    }),
  );
});
