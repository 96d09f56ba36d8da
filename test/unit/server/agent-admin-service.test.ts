import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { agentAdminService } from '../../../src/server/api/agent-admin-service.js';
import type { ProtoAgent } from '../../../src/server/api/proto-types.js';
import type { AttestedAgent } from '../../../src/server/datastore/datastore.js';
import { sels, withDatastore, type DatastoreFixture } from '../datastore/fixture.js';

type Answer = ProtoAgent & { agents: ProtoAgent[] };
type Handler = (call: { request: unknown }, cb: (err: ServiceError | null, res?: Answer) => void) => void;

const agent = (dc: string, n: string): AttestedAgent => ({
  spiffeId: `spiffe://example.org/meshid/agent/${dc}/${n}`,
  datacenter: dc,
  selectors: sels(`meshid:datacenter:${dc}`),
  certSerial: `${n}-s1`,
  certNotAfter: Date.UTC(2030, 0, 1),
  attestedAt: 0,
  updatedAt: 0,
  banned: false,
});

/** The admin API's agent service (serving east and west) over a fresh datastore, its handlers called directly. */
async function withAgents(fn: (t: DatastoreFixture & { call: (method: string, request: unknown) => Promise<{ err: ServiceError | null; res?: Answer }> }) => Promise<void>): Promise<void> {
  await withDatastore(async (fx) => {
    const svc = agentAdminService(fx.ds, { datacenters: ['east', 'west'] }, silentLogger());
    const call = (method: string, request: unknown) =>
      new Promise<{ err: ServiceError | null; res?: Answer }>((resolve) => (svc[method] as unknown as Handler)({ request }, (err, res) => resolve({ err, res })));
    await fn({ ...fx, call });
  });
}

test("ListAgents lists one datacenter's agents when asked, a datacenter no longer served while it has agents, and refuses a name with neither", async () => {
  await withAgents(async ({ ds, call }) => {
    for (const a of [agent('east', 'a'), agent('west', 'b'), agent('old', 'c')]) await ds.createAgent(a);
    const ids = async (request: unknown) => (await call('ListAgents', request)).res!.agents.map((a) => a.spiffe_id);
    assert.equal((await ids({})).length, 3);
    assert.deepEqual(await ids({ datacenter: 'west' }), [agent('west', 'b').spiffeId]);
    assert.deepEqual(await ids({ datacenter: 'old' }), [agent('old', 'c').spiffeId]);
    assert.deepEqual(await ids({ datacenter: 'east' }), [agent('east', 'a').spiffeId]);
    const { err } = await call('ListAgents', { datacenter: 'esat' });
    assert.equal(err?.code, status.INVALID_ARGUMENT);
    assert.match(err!.details, /datacenter "esat" is not served/);
    await ds.evictAgent(agent('west', 'b').spiffeId);
    assert.deepEqual((await call('ListAgents', { datacenter: 'west' })).res!.agents, [], 'a served datacenter with no agents lists none');
  });
});

test('BanAgent keeps the record, banned; EvictAgent removes it unbanned; an unknown or missing agent ID is refused', async () => {
  await withAgents(async ({ ds, call }) => {
    const a = agent('east', 'a');
    const b = agent('east', 'b');
    await ds.createAgent(a);
    await ds.createAgent(b);
    const banned = await call('BanAgent', { spiffe_id: a.spiffeId });
    assert.equal(banned.err, null);
    assert.equal(banned.res!.banned, true);
    assert.equal((await ds.getAgent(a.spiffeId))?.banned, true);
    const evicted = await call('EvictAgent', { spiffe_id: b.spiffeId });
    assert.equal(evicted.err, null);
    assert.equal(evicted.res!.banned, false);
    assert.equal(await ds.getAgent(b.spiffeId), undefined);
    assert.equal((await call('GetAgent', { spiffe_id: a.spiffeId })).res!.banned, true);
    for (const method of ['GetAgent', 'BanAgent', 'EvictAgent']) {
      assert.equal((await call(method, { spiffe_id: b.spiffeId })).err?.code, status.NOT_FOUND, method);
      assert.equal((await call(method, {})).err?.code, status.INVALID_ARGUMENT, method);
    }
  });
});
