import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { entryService } from '../../../src/server/api/entry-service.js';
import type { ProtoEntry } from '../../../src/server/api/proto-types.js';
import { entry, withDatastore } from '../datastore/fixture.js';

type Handler = (call: { request: unknown }, cb: (err: ServiceError | null, res?: ProtoEntry) => void) => void;

/**
 * The handlers are called directly (no gRPC transport: a stubbed call object), both in one tick, as grpc-js does when
 * both requests' frames arrive in one read: each reads the entry before either writes.
 */
test('two UpdateEntry calls started in one tick (stubbed gRPC call objects), one moving spiffe_id to X and one parent_id to X, leave no entry that is its own parent', async () => {
  await withDatastore(async ({ ds }) => {
    const [created] = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/s', parentId: 'spiffe://example.org/p' })]);
    const id = created!.entry!.id;
    const svc = entryService(ds, { trustDomain: 'example.org', maxX509SvidTtlMs: 86_400_000, maxJwtSvidTtlMs: 86_400_000 }, silentLogger());
    const update = svc.UpdateEntry as unknown as Handler;
    const call = (request: unknown): Promise<{ err: ServiceError | null }> => new Promise((resolve) => update({ request }, (err) => resolve({ err })));
    const x = 'spiffe://example.org/x';
    const results = await Promise.all([
      call({ entry: { id, spiffe_id: x }, mask: ['spiffe_id'] }),
      call({ entry: { id, parent_id: x }, mask: ['parent_id'] }),
    ]);
    const after = await ds.getEntry(id);
    assert.notEqual(after.parentId, after.spiffeId, 'the entry became its own parent');
    assert.deepEqual(results.map((r) => r.err?.code ?? status.OK), [status.OK, status.INVALID_ARGUMENT]);
    assert.match(results[1]!.err!.details, /own parent.*read it again/);
  });
});
