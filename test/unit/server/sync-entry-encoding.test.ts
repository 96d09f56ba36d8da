import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { loadProto, protoRoot } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { silentLogger } from '../../../src/common/log.js';
import { entryToProto } from '../../../src/server/api/convert.js';
import type { ProtoBundle, ProtoEntry } from '../../../src/server/api/proto-types.js';
import { encodedEntry, syncEntryProto, syncUpdateSerializer, withSyncEntryEncoding } from '../../../src/server/api/sync-entry-encoding.js';
import { SyncHub } from '../../../src/server/api/sync-hub.js';
import { syncUpdateMessages, type SyncUpdate } from '../../../src/server/api/sync-update-parts.js';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { entry, sels, withDatastore } from '../datastore/fixture.js';

const AGENT_PROTO = ['meshid/v1/agent.proto', 'grpc/health/v1/health.proto'];
const definition = serviceOf(loadProto(AGENT_PROTO), 'meshid.agent.v1.Node');
/** proto-loader's own SyncUpdate serializer: what the server used for every update before the entry cache. */
const oldSerialize = definition['Sync']!.responseSerialize;
const newSerialize = withSyncEntryEncoding(definition)['Sync']!.responseSerialize;
const SyncUpdateType: protobuf.Type = protoRoot(AGENT_PROTO).lookupType('meshid.agent.v1.SyncUpdate');

const PARENT = 'spiffe://example.org/meshid/agent/dc1/a1';
const bundle: ProtoBundle = {
  trust_domain: 'example.org',
  x509_authorities: [Buffer.alloc(600, 1), Buffer.alloc(500, 2)],
  jwt_authorities: [{ kid: 'k1', public_key: Buffer.alloc(91, 3) }],
  sequence: 7,
  refresh_hint: 300,
};

/** A push of `entries` as node-sync builds it, with `toProto` making the Entry messages. */
function push(entries: readonly RegistrationEntry[], removed: string[], toProto: (e: RegistrationEntry) => ProtoEntry, maxBytes?: number): SyncUpdate[] {
  return syncUpdateMessages(
    {
      revision: 42,
      initial: true,
      entries: entries.map(toProto),
      removed,
      bundle,
      federatedBundles: [{ ...bundle, trust_domain: 'partner.example', sequence: 3 }],
      tainted: ['aa11', 'bb22'],
    },
    maxBytes,
  );
}

/**
 * The push of `entries` serialized through the cache equals, byte for byte, the same push with freshly made messages
 * serialized by proto-loader alone; and it decodes to the current entries.
 */
function assertSameWire(entries: readonly RegistrationEntry[], removed: string[] = [], maxBytes?: number): void {
  const cached = push(entries, removed, syncEntryProto, maxBytes).map((u) => newSerialize(u));
  const fresh = push(entries, removed, entryToProto, maxBytes).map((u) => oldSerialize(u));
  assert.equal(cached.length, fresh.length);
  cached.forEach((bytes, i) => assert.ok(bytes.equals(fresh[i]!), `message ${i} of ${cached.length} differs from the old encoder's`));
  const decoded = cached.flatMap((b) => (SyncUpdateType.toObject(SyncUpdateType.decode(b), { longs: Number }) as { entries?: ProtoEntry[] }).entries ?? []);
  assert.deepEqual(
    decoded.map((e) => [e.id, e.spiffe_id, e.revision, e.selectors?.map((s) => `${s.type}:${s.value}`), e.dns_names ?? [], e.created_at_ms]),
    entries.map((e) => [e.id, e.spiffeId, e.revision, e.selectors.map((s) => `${s.type}:${s.value}`), e.dnsNames, e.createdAt]),
  );
}

test('Sync updates built from cached entry bytes are the old encoder\'s bytes, through an entry update, a delete and a re-create under the same ID', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const hub = new SyncHub(ds, 'example.org', silentLogger());
    await ds.createEntries(
      Array.from({ length: 40 }, (_, i) =>
        entry({ spiffeId: `spiffe://example.org/w${i}`, parentId: PARENT, dnsNames: [`w${i}.example.org`], hint: `h${i}`, federatesWith: ['partner.example'] }),
      ),
    );
    await hub.start();
    try {
      const held = (): RegistrationEntry[] => hub.index.childrenOf(PARENT).slice().sort((x, y) => x.spiffeId.localeCompare(y.spiffeId));
      // Every entry encoded (and cached) once, then the same push again from the cache.
      assertSameWire(held());
      assertSameWire(held());
      const [a, b] = held();

      // An update: same ID, new revision, selectors and DNS names; a cache by ID would send the old ones.
      clock.advance(1000);
      await ds.updateEntry(a!.id, { selectors: sels('unix:uid:2000', 'unix:gid:7'), dnsNames: ['a.example.org', 'b.example.org'] });
      await hub.settled();
      assert.notEqual(hub.index.get(a!.id)!.revision, a!.revision);
      assertSameWire(held());

      // A delete: gone from the push, named as removed.
      await ds.deleteEntries([b!.id]);
      await hub.settled();
      assertSameWire(held(), [b!.id]);

      // Re-created under the same ID with other contents (as a restore or an import does).
      clock.advance(1000);
      await ds.createEntries([entry({ id: b!.id, spiffeId: 'spiffe://example.org/w1-again', parentId: PARENT, selectors: sels('unix:uid:31') })]);
      await hub.settled();
      const again = hub.index.get(b!.id)!;
      assert.equal(again.spiffeId, 'spiffe://example.org/w1-again');
      assert.notEqual(again.createdAt, b!.createdAt);
      assertSameWire(held());

      // Split over several messages (the agents' receive limit), each still the old encoder's bytes.
      assertSameWire(held(), [], 2_000);
    } finally {
      hub.stop();
    }
  });
});

test('an update with no entries, and one with only removals, serialize as before', () => {
  for (const u of [...push([], [], entryToProto), ...push([], ['e-0000000000000001'], entryToProto)]) {
    assert.ok(newSerialize(u).equals(oldSerialize(u)));
  }
  const bare = { revision: 0, initial: false, entries: [], removed_entry_ids: [], federated_bundles: [], federated_bundles_changed: false, tainted_authority_ids: [] };
  assert.ok(syncUpdateSerializer(oldSerialize)(bare).equals(oldSerialize(bare)));
});

test('an entry message changed in place after it was encoded is encoded again: only the frozen messages of syncEntryProto are cached', () => {
  const e: ProtoEntry = { id: 'e-0000000000000001', spiffe_id: 'spiffe://example.org/a', parent_id: PARENT, revision: 1 };
  const first = encodedEntry(e);
  e.spiffe_id = 'spiffe://example.org/b';
  e.revision = 2;
  assert.ok(!encodedEntry(e).equals(first));
  const update: SyncUpdate = { revision: 2, initial: false, entries: [e], removed_entry_ids: [], federated_bundles: [], federated_bundles_changed: false, tainted_authority_ids: [] };
  assert.ok(newSerialize(update).equals(oldSerialize(update)));
});

test('syncEntryProto gives one frozen message per entry object, a new one for a new object with the same ID', async () => {
  await withDatastore(async ({ ds }) => {
    const [created] = await ds.createEntries([entry({ parentId: PARENT })]);
    const e = created!.entry!;
    const p = syncEntryProto(e);
    assert.equal(syncEntryProto(e), p);
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.selectors) && Object.isFrozen(p.selectors![0]));
    assert.throws(() => {
      (p as { revision?: number }).revision = 99;
    }, TypeError);
    const updated = await ds.updateEntry(e.id, { hint: 'changed' });
    assert.notEqual(syncEntryProto(updated), p);
    assert.equal(syncEntryProto(updated).hint, 'changed');
  });
});
