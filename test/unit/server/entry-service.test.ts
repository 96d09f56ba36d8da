import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { entryService } from '../../../src/server/api/entry-service.js';
import type { ProtoEntry } from '../../../src/server/api/proto-types.js';
import { entry, sels, withDatastore, type DatastoreFixture } from '../datastore/fixture.js';

type Result = { status: { code: number; message: string }; entry?: ProtoEntry; id?: string };
type Answer = ProtoEntry & { results: Result[]; entries: ProtoEntry[] };
type Handler = (call: { request: unknown }, cb: (err: ServiceError | null, res?: Answer) => void) => void;

const LIMITS = { trustDomain: 'example.org', maxX509SvidTtlMs: 86_400_000, maxJwtSvidTtlMs: 3_600_000 };
const PARENT = 'spiffe://example.org/meshid/agent/dc1/a1';
const proto = (path: string, more: Partial<ProtoEntry> = {}): ProtoEntry => ({
  spiffe_id: `spiffe://example.org/${path}`, parent_id: PARENT, selectors: [{ type: 'unix', value: 'uid:1000' }], ...more,
});

/** The admin API's entry service over a fresh datastore (federating with a.org, b.org, c.org), its handlers called directly. */
async function withEntries(fn: (t: DatastoreFixture & { call: (method: string, request: unknown) => Promise<{ err: ServiceError | null; res?: Answer }> }) => Promise<void>): Promise<void> {
  await withDatastore(async (fx) => {
    const svc = entryService(fx.ds, LIMITS, silentLogger(), new Set(['a.org', 'b.org', 'c.org']));
    const call = (method: string, request: unknown) =>
      new Promise<{ err: ServiceError | null; res?: Answer }>((resolve) => (svc[method] as unknown as Handler)({ request }, (err, res) => resolve({ err, res })));
    await fn({ ...fx, call });
  });
}

test('CreateEntries answers per entry: an invalid one, a duplicate (with the entry it duplicates) and a valid one; more than 10,000 is refused whole', async () => {
  await withEntries(async ({ call }) => {
    const first = await call('CreateEntries', { entries: [proto('web')] });
    const existing = first.res!.results[0]!.entry!;
    const { err, res } = await call('CreateEntries', { entries: [proto('bad', { selectors: [] }), proto('web'), proto('db', { id: 'chosen-id' })] });
    assert.equal(err, null);
    assert.deepEqual(res!.results.map((r) => r.status.code), [status.INVALID_ARGUMENT, status.ALREADY_EXISTS, status.OK]);
    assert.equal(res!.results[1]!.entry?.id, existing.id);
    assert.equal(res!.results[2]!.entry?.id, 'chosen-id');
    const idTooLong = await call('CreateEntries', { entries: [proto('x', { id: 'i'.repeat(256) }), proto('y', { id: 'i'.repeat(255) })] });
    assert.deepEqual(idTooLong.res!.results.map((r) => r.status.code), [status.INVALID_ARGUMENT, status.OK]);
    const many = await call('CreateEntries', { entries: Array.from({ length: 10_001 }, (_, i) => proto(`w${i}`)) });
    assert.equal(many.err?.code, status.INVALID_ARGUMENT);
    assert.match(many.err!.details, /10001 entries in one call: at most 10000/);
  });
});

test('UpdateEntry changes only the masked fields, refuses an empty mask or an unknown field, and keeps an entry editable whose TTL today exceeds the maximum', async () => {
  await withEntries(async ({ ds, call }) => {
    const [created] = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/web', parentId: PARENT, x509SvidTtlSeconds: 200_000, hint: 'old' })]);
    const id = created!.entry!.id;
    const { err, res } = await call('UpdateEntry', { entry: { id, hint: 'new', dns_names: ['Web.Example.org'], admin: true, downstream: true }, mask: ['hint', 'dns_names', 'admin', 'downstream'] });
    assert.equal(err, null);
    assert.deepEqual([res!.hint, res!.dns_names, res!.admin, res!.downstream, res!.x509_svid_ttl], ['new', ['web.example.org'], true, true, 200_000]);
    const after = await ds.getEntry(id);
    assert.deepEqual([after.hint, after.dnsNames, after.admin, after.downstream, after.x509SvidTtlSeconds], ['new', ['web.example.org'], true, true, 200_000]);
    for (const mask of [[], ['revision'], ['id']]) {
      const refused = await call('UpdateEntry', { entry: { id, hint: 'x' }, mask });
      assert.equal(refused.err?.code, status.INVALID_ARGUMENT, JSON.stringify(mask));
    }
    const overMax = await call('UpdateEntry', { entry: { id, x509_svid_ttl: 200_000 }, mask: ['x509_svid_ttl'] });
    assert.equal(overMax.err?.code, status.INVALID_ARGUMENT, 'a TTL written now is held to the maximum');
    assert.equal((await ds.getEntry(id)).hint, 'new');
  });
});

test('ListEntries matches selectors exactly and federates_with as a superset unless told otherwise, and filters downstream entries', async () => {
  await withEntries(async ({ ds, call }) => {
    const made = await ds.createEntries([
      entry({ spiffeId: 'spiffe://example.org/one', parentId: PARENT, selectors: sels('unix:uid:1'), federatesWith: ['a.org'] }),
      entry({ spiffeId: 'spiffe://example.org/two', parentId: PARENT, selectors: sels('unix:uid:1', 'unix:gid:2'), federatesWith: ['a.org', 'b.org'] }),
      entry({ spiffeId: 'spiffe://example.org/three', parentId: PARENT, selectors: sels('unix:uid:3'), federatesWith: ['a.org', 'b.org', 'c.org'], downstream: true }),
    ], { federableWithoutBundle: new Set(['a.org', 'b.org', 'c.org']) });
    assert.ok(made.every((r) => r.entry !== undefined));
    const paths = async (request: unknown) => (await call('ListEntries', request)).res!.entries.map((e) => e.spiffe_id!.slice('spiffe://example.org/'.length)).sort();
    assert.deepEqual(await paths({ selectors: [{ type: 'unix', value: 'uid:1' }] }), ['one']);
    assert.deepEqual(await paths({ selectors: [{ type: 'unix', value: 'uid:1' }], selector_match: 'superset' }), ['one', 'two']);
    assert.deepEqual(await paths({ federates_with_list: ['a.org', 'b.org'] }), ['three', 'two']);
    assert.deepEqual(await paths({ federates_with_list: ['a.org', 'b.org'], federates_with_match: 'exact' }), ['two']);
    assert.deepEqual(await paths({ downstream: true }), ['three']);
    assert.deepEqual(await paths({ downstream: false }), ['one', 'three', 'two']);
  });
});

test('DeleteEntries answers per ID: an empty ID is invalid, an unknown one not found, the rest deleted', async () => {
  await withEntries(async ({ ds, call }) => {
    const [created] = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/web', parentId: PARENT })]);
    const id = created!.entry!.id;
    const { err, res } = await call('DeleteEntries', { ids: ['', id, 'nope'] });
    assert.equal(err, null);
    assert.deepEqual(res!.results.map((r) => [r.id, r.status.code]), [['', status.INVALID_ARGUMENT], [id, status.OK], ['nope', status.NOT_FOUND]]);
    await assert.rejects(ds.getEntry(id));
  });
});

test('DeleteEntries refuses more than 10,000 IDs whole, and ListEntries more than 128 federates_with trust domains, deleting and reading nothing', async () => {
  await withEntries(async ({ ds, call }) => {
    const [created] = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/web', parentId: PARENT })]);
    const id = created!.entry!.id;
    const many = await call('DeleteEntries', { ids: [id, ...Array.from({ length: 10_000 }, (_, i) => `e${i}`)] });
    assert.equal(many.err?.code, status.INVALID_ARGUMENT);
    assert.match(many.err!.details, /10001 entry IDs in one call: at most 10000/);
    assert.equal((await ds.getEntry(id)).id, id);
    const tds = Array.from({ length: 129 }, (_, i) => `td${i}.org`);
    const list = await call('ListEntries', { federates_with_list: tds, federates_with_match: 'any' });
    assert.equal(list.err?.code, status.INVALID_ARGUMENT);
    assert.match(list.err!.details, /129 trust domains: at most 128/);
  });
});
