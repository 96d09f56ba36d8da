import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import type { ProtoBundle, ProtoEntry } from '../../../src/server/api/proto-types.js';
import { bundleWireBytes, entryWireBytes, splitSyncPush, syncUpdateMessages } from '../../../src/server/api/sync-update-parts.js';

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

/** A bundle of `roots` authorities of `bytes` each: the serializer takes any bytes, so no certificate is needed. */
function bundle(td: string, roots: number, bytes: number): ProtoBundle {
  return {
    trust_domain: td,
    x509_authorities: Array.from({ length: roots }, (_, i) => Buffer.alloc(bytes, i)),
    jwt_authorities: [{ kid: 'k'.repeat(40), public_key: Buffer.alloc(91, 1), expires_at: 2 ** 40 }],
    sequence: Number.MAX_SAFE_INTEGER,
    refresh_hint: 2 ** 40,
  };
}

test('bundleWireBytes is never below what the bundle takes in a SyncUpdate, a root over 2 MiB included', () => {
  for (const b of [bundle('a.example', 0, 0), bundle('b.example', 3, 600), bundle('c.example', 1, 3 * 1024 * 1024), { trust_domain: 'd.example' }]) {
    const encoded = serializeUpdate({ bundle: b }).length;
    assert.ok(bundleWireBytes(b) >= encoded, `${bundleWireBytes(b)} < ${encoded}`);
  }
});

test("a push's messages, federated bundles of a few MiB on the first, each stay within the bound: the entries make room for the bundles", () => {
  const bound = 1024 * 1024;
  const entries = Array.from({ length: 4000 }, (_, i) => entry(i, 200));
  const tainted = Array.from({ length: 8 }, (_, i) => i.toString(16).padStart(40, '0'));
  for (const federatedBundles of [[bundle('partner.example', 300, 1200)], [bundle('p1.example', 300, 1200), bundle('p2.example', 600, 1200)]]) {
    const push = { revision: 7, initial: true, entries, removed: ['gone'], bundle: bundle('example.org', 2, 500), federatedBundles, tainted };
    const messages = syncUpdateMessages(push, bound);
    for (const m of messages.slice(1)) assert.ok(serializeUpdate(m).length <= bound, `a message of ${serializeUpdate(m).length} bytes`);
    const first = serializeUpdate(messages[0]!).length;
    const bundlesAlone = serializeUpdate({ ...messages[0]!, entries: [], removed_entry_ids: [] }).length;
    // Bundles over the bound go alone; below it, they and the entries keep within it.
    assert.ok(first <= Math.max(bound, bundlesAlone), `the first message is ${first} bytes, its bundles ${bundlesAlone}`);
    assert.deepEqual(messages.flatMap((m) => m.entries), entries);
    assert.deepEqual(messages.flatMap((m) => m.removed_entry_ids), ['gone']);
    assert.deepEqual(messages.map((m) => m.initial), [...messages.slice(1).map(() => false), true]);
    assert.deepEqual(messages.map((m) => m.bundle !== undefined), [true, ...messages.slice(1).map(() => false)]);
    assert.deepEqual(messages.map((m) => m.federated_bundles_changed), [true, ...messages.slice(1).map(() => false)]);
    assert.deepEqual(messages[0]!.federated_bundles, federatedBundles);
    for (const m of messages) assert.deepEqual(m.tainted_authority_ids, tainted);
  }
});
