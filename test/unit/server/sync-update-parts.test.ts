import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import type { ProtoEntry } from '../../../src/server/api/proto-types.js';
import { entryWireBytes, splitSyncPush } from '../../../src/server/api/sync-update-parts.js';

const serializeUpdate = serviceOf(loadProto('meshid/v1/agent.proto'), 'meshid.agent.v1.Node')['Sync']!.responseSerialize;

function entry(i: number, selectorBytes: number, selectors = 3): ProtoEntry {
  return {
    id: `e-${i.toString(16).padStart(16, '0')}`,
    spiffe_id: `spiffe://example.org/ns/payments/sa/processor-${i}`,
    parent_id: 'spiffe://example.org/node/east',
    selectors: Array.from({ length: selectors }, (_, k) => ({ type: 'k8s', value: `label-${k}:${'v'.repeat(selectorBytes)}` })),
    x509_svid_ttl: 2 ** 31 - 1,
    jwt_svid_ttl: 2 ** 31 - 1,
    dns_names: [`processor-${i}.payments.svc.cluster.local`],
    hint: 'h'.repeat(100),
    federates_with: ['partner.example'],
    admin: true,
    downstream: true,
    revision: Number.MAX_SAFE_INTEGER,
    created_at: 2 ** 40,
    created_at_ms: Date.now(),
  };
}

test('entryWireBytes is never below what the entry takes in a SyncUpdate', () => {
  for (const e of [entry(1, 0, 0), entry(2, 10), entry(3, 1000, 128), { id: 'e-1' }]) {
    const alone = serializeUpdate({ entries: [] }).length;
    const encoded = serializeUpdate({ entries: [e] }).length - alone;
    assert.ok(entryWireBytes(e) >= encoded, `${entryWireBytes(e)} < ${encoded}`);
  }
});

test('a push is cut into parts of at most the bound, in order, every entry and removal once; a small one stays whole', () => {
  const entries = Array.from({ length: 3000 }, (_, i) => entry(i, 200));
  const removed = Array.from({ length: 5000 }, (_, i) => `e-removed-${i}`);
  const parts = splitSyncPush(entries, removed, 256 * 1024);
  assert.ok(parts.length > 1);
  for (const p of parts) assert.ok(serializeUpdate({ entries: p.entries, removed_entry_ids: p.removed }).length <= 256 * 1024);
  assert.deepEqual(parts.flatMap((p) => p.entries), entries);
  assert.deepEqual(parts.flatMap((p) => p.removed), removed);

  assert.deepEqual(splitSyncPush(entries.slice(0, 2), ['x']), [{ entries: entries.slice(0, 2), removed: ['x'] }]);
  assert.deepEqual(splitSyncPush([], []), [{ entries: [], removed: [] }]);
  const huge = entry(9, 1000, 128);
  assert.deepEqual(splitSyncPush([entries[0]!, huge, entries[1]!], [], 1024).map((p) => p.entries.length), [1, 1, 1], 'an entry over the bound goes alone');
});
