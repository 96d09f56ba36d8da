import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { isMeshidError } from '../../../src/common/errors.js';
import type { RegistrationEntry, SelectorMatch } from '../../../src/server/datastore/datastore.js';
import { entry, sels, withDatastore } from './fixture.js';

const created = (r: { entry?: RegistrationEntry; error?: unknown }): RegistrationEntry => {
  assert.equal(r.error, undefined, `unexpected error: ${String(r.error)}`);
  return r.entry!;
};

test('a created entry reads back with every field, sorted unique selectors, an e- id and timestamps from the clock', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const [r] = await ds.createEntries([
      entry({
        selectors: sels('unix:uid:1000', 'docker:label:app=web', 'unix:gid:0', 'unix:uid:1000'),
        dnsNames: ['web.example.org', 'a.example.org'],
        hint: 'frontend',
        federatesWith: ['partner.org', 'other.org', 'partner.org'],
        admin: true,
        downstream: true,
        x509SvidTtlSeconds: 7200,
        jwtSvidTtlSeconds: 60,
      }),
    ]);
    const e = created(r!);
    assert.match(e.id, /^e-[0-9a-f]{16}$/);
    const got = await ds.getEntry(e.id);
    assert.deepEqual(got, e);
    assert.deepEqual(got.selectors, sels('docker:label:app=web', 'unix:gid:0', 'unix:uid:1000'));
    assert.deepEqual(got.dnsNames, ['web.example.org', 'a.example.org'], 'DNS name order is kept (the first may become the CN)');
    assert.deepEqual(got.federatesWith, ['other.org', 'partner.org']);
    assert.equal(got.admin, true);
    assert.equal(got.downstream, true);
    assert.equal(got.x509SvidTtlSeconds, 7200);
    assert.equal(got.jwtSvidTtlSeconds, 60);
    assert.equal(got.createdAt, clock.now());
    assert.equal(got.updatedAt, clock.now());
    assert.equal(await ds.countEntries(), 1);
  });
});

test('same SPIFFE ID, parent and selector set is already_exists, also within one batch; the rest of the batch is created', async () => {
  await withDatastore(async ({ ds }) => {
    const first = created((await ds.createEntries([entry({ selectors: sels('unix:uid:1', 'unix:gid:2') })]))[0]!);
    const results = await ds.createEntries([
      entry({ selectors: sels('unix:gid:2', 'unix:uid:1') }), // same set, other order
      entry({ spiffeId: 'spiffe://example.org/api' }),
      entry({ spiffeId: 'spiffe://example.org/api' }), // twin of the previous one in the same batch
      entry({ spiffeId: 'spiffe://example.org/api', selectors: sels('unix:uid:2') }),
    ]);
    assert.ok(isMeshidError(results[0]!.error, 'already_exists'));
    assert.match(results[0]!.error!.message, new RegExp(`already exists \\(${first.id}\\)`));
    assert.deepEqual(results[0]!.existing, first, 'a twin\'s result carries the entry it duplicates');
    const api = created(results[1]!);
    assert.ok(isMeshidError(results[2]!.error, 'already_exists'));
    assert.match(results[2]!.error!.message, new RegExp(api.id));
    assert.deepEqual(results[2]!.existing, api);
    created(results[3]!);
    assert.equal(await ds.countEntries(), 3);
  });
});

test('an entry differing only in parent or in one selector is not a duplicate', async () => {
  await withDatastore(async ({ ds }) => {
    const results = await ds.createEntries([
      entry(),
      entry({ parentId: 'spiffe://example.org/meshid/agent/dc1/a2' }),
      entry({ selectors: sels('unix:uid:1000', 'unix:gid:0') }),
    ]);
    results.forEach(created);
  });
});

test('an invalid entry in a batch gets invalid_argument and does not stop the others', async () => {
  await withDatastore(async ({ ds }) => {
    const results = await ds.createEntries([entry({ spiffeId: '' }), entry({ x509SvidTtlSeconds: -1 }), entry()]);
    assert.ok(isMeshidError(results[0]!.error, 'invalid_argument'));
    assert.ok(isMeshidError(results[1]!.error, 'invalid_argument'));
    created(results[2]!);
    assert.equal(await ds.countEntries(), 1);
  });
});

test('a given id is kept; reusing an id is already_exists', async () => {
  await withDatastore(async ({ ds }) => {
    created((await ds.createEntries([entry({ id: 'restored-1' })]))[0]!);
    assert.equal((await ds.getEntry('restored-1')).spiffeId, 'spiffe://example.org/web');
    const [r] = await ds.createEntries([entry({ id: 'restored-1', spiffeId: 'spiffe://example.org/other' })]);
    assert.ok(isMeshidError(r!.error, 'already_exists'));
  });
});

test('unknown ids are not_found for get, update and delete', async () => {
  await withDatastore(async ({ ds }) => {
    await assert.rejects(ds.getEntry('e-0000000000000000'), (err) => isMeshidError(err, 'not_found') && /e-0000000000000000/.test(err.message));
    await assert.rejects(ds.updateEntry('e-0000000000000000', { hint: 'x' }), (err) => isMeshidError(err, 'not_found'));
    const [r] = await ds.deleteEntries(['e-0000000000000000']);
    assert.ok(isMeshidError(r!.error, 'not_found'));
  });
});

test('update changes only the patched fields, bumps the revision and updatedAt, keeps createdAt', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const e = created((await ds.createEntries([entry({ dnsNames: ['a.example.org'] })]))[0]!);
    clock.advance(5000);
    const u = await ds.updateEntry(e.id, { hint: 'h', selectors: sels('unix:uid:7', 'unix:gid:7'), federatesWith: ['x.org'] });
    assert.equal(u.hint, 'h');
    assert.deepEqual(u.selectors, sels('unix:gid:7', 'unix:uid:7'));
    assert.deepEqual(u.federatesWith, ['x.org']);
    assert.deepEqual(u.dnsNames, ['a.example.org']);
    assert.equal(u.spiffeId, e.spiffeId);
    assert.ok(u.revision > e.revision);
    assert.equal(u.createdAt, e.createdAt);
    assert.equal(u.updatedAt, e.createdAt + 5000);
    assert.deepEqual(await ds.getEntry(e.id), u);
    // The searchable copies follow the update.
    assert.deepEqual((await ds.listEntries({ selectors: { match: 'exact', selectors: sels('unix:uid:7', 'unix:gid:7') } })).entries.map((x) => x.id), [e.id]);
    assert.deepEqual((await ds.listEntries({ selectors: { match: 'any', selectors: sels('unix:uid:1000') } })).entries, []);
    assert.deepEqual((await ds.listEntries({ federatesWith: { match: 'superset', trustDomains: ['x.org'] } })).entries.map((x) => x.id), [e.id]);
  });
});

test('an update that changes nothing returns the entry without a new revision', async () => {
  await withDatastore(async ({ ds }) => {
    const e = created((await ds.createEntries([entry({ hint: 'same' })]))[0]!);
    const before = await ds.currentRevision();
    assert.deepEqual(await ds.updateEntry(e.id, { hint: 'same', selectors: sels('unix:uid:1000') }), e);
    assert.equal(await ds.currentRevision(), before);
  });
});

test('an update colliding with another entry is already_exists and changes nothing', async () => {
  await withDatastore(async ({ ds }) => {
    const [a, b] = (await ds.createEntries([entry(), entry({ spiffeId: 'spiffe://example.org/api' })])).map(created);
    await assert.rejects(ds.updateEntry(b!.id, { spiffeId: a!.spiffeId }), (err) => isMeshidError(err, 'already_exists') && err.message.includes(a!.id));
    assert.deepEqual(await ds.getEntry(b!.id), b);
  });
});

test('two updates each valid against the entry they read (one moves spiffe_id to X, the other parent_id to X) cannot together make it its own parent: the second is invalid_argument and changes nothing', async () => {
  await withDatastore(async ({ ds }) => {
    const e = created((await ds.createEntries([entry()]))[0]!);
    const x = 'spiffe://example.org/x';
    const moved = await ds.updateEntry(e.id, { spiffeId: x });
    await assert.rejects(
      ds.updateEntry(e.id, { parentId: x }),
      (err) => isMeshidError(err, 'invalid_argument') && err.message.includes('its own parent') && err.message.includes('read it again'),
    );
    assert.deepEqual(await ds.getEntry(e.id), moved);
  });
});

test('deleteEntries deletes known ids, reports unknown ones, and removes the selector index rows', async () => {
  await withDatastore(async ({ ds }) => {
    const [a, b] = (await ds.createEntries([entry(), entry({ spiffeId: 'spiffe://example.org/api', selectors: sels('unix:uid:5') })])).map(created);
    const results = await ds.deleteEntries([a!.id, 'e-missing', a!.id]);
    assert.deepEqual(results.map((r) => [r.id, r.error?.code]), [[a!.id, undefined], ['e-missing', 'not_found'], [a!.id, 'not_found']]);
    assert.deepEqual((await ds.listAllEntries()).map((e) => e.id), [b!.id]);
    assert.deepEqual((await ds.listEntries({ selectors: { match: 'any', selectors: sels('unix:uid:1000') } })).entries, []);
    // The same identity can be registered again once deleted.
    created((await ds.createEntries([entry()]))[0]!);
  });
});

test('selector matching: exact, subset, superset and any follow SPIRE semantics', async () => {
  await withDatastore(async ({ ds }) => {
    const make = (spiffe: string, ...s: string[]) => entry({ spiffeId: `spiffe://example.org/${spiffe}`, selectors: sels(...s) });
    (await ds.createEntries([
      make('a', 'unix:uid:1'),
      make('ab', 'unix:uid:1', 'unix:gid:2'),
      make('abc', 'unix:uid:1', 'unix:gid:2', 'unix:path:/bin/x'),
      make('c', 'unix:path:/bin/x'),
      make('d', 'docker:image:nginx'),
    ])).forEach(created);
    const names = async (match: SelectorMatch, ...s: string[]): Promise<string[]> =>
      (await ds.listEntries({ selectors: { match, selectors: sels(...s) } })).entries.map((e) => e.spiffeId.slice('spiffe://example.org/'.length)).sort();
    assert.deepEqual(await names('exact', 'unix:gid:2', 'unix:uid:1'), ['ab']);
    assert.deepEqual(await names('exact', 'unix:uid:1'), ['a']);
    assert.deepEqual(await names('subset', 'unix:uid:1', 'unix:gid:2'), ['a', 'ab']);
    assert.deepEqual(await names('subset', 'unix:uid:1', 'unix:gid:2', 'unix:path:/bin/x', 'unix:uid:9'), ['a', 'ab', 'abc', 'c']);
    assert.deepEqual(await names('superset', 'unix:uid:1', 'unix:gid:2'), ['ab', 'abc']);
    assert.deepEqual(await names('superset', 'unix:path:/bin/x'), ['abc', 'c']);
    assert.deepEqual(await names('any', 'unix:path:/bin/x', 'docker:image:nginx'), ['abc', 'c', 'd']);
    assert.deepEqual(await names('any', 'unix:uid:404'), []);
    // A selector type is part of the selector: uid:1 under another type matches nothing.
    assert.deepEqual(await names('any', 'docker:uid:1'), []);
  });
});

test('filters by SPIFFE ID, parent, hint and federated trust domain combine with AND', async () => {
  await withDatastore(async ({ ds }) => {
    const p1 = 'spiffe://example.org/meshid/agent/dc1/a1';
    const p2 = 'spiffe://example.org/meshid/agent/dc1/a2';
    (await ds.createEntries([
      entry({ parentId: p1, hint: 'h1', federatesWith: ['b.org'] }),
      entry({ parentId: p2, hint: 'h1' }),
      entry({ parentId: p2, spiffeId: 'spiffe://example.org/api', hint: 'h2', federatesWith: ['b.org', 'c.org'] }),
    ])).forEach(created);
    const ids = async (f: Parameters<typeof ds.listEntries>[0]) =>
      (await ds.listEntries(f)).entries.map((e) => `${e.parentId.slice(-2)} ${e.spiffeId.slice('spiffe://example.org/'.length)}`).sort();
    assert.deepEqual(await ids({ spiffeId: 'spiffe://example.org/web' }), ['a1 web', 'a2 web']);
    assert.deepEqual(await ids({ parentId: p2 }), ['a2 api', 'a2 web']);
    assert.deepEqual(await ids({ hint: 'h1', parentId: p2 }), ['a2 web']);
    const fed = (match: SelectorMatch, ...trustDomains: string[]) => ({ federatesWith: { match, trustDomains } });
    assert.deepEqual(await ids(fed('superset', 'b.org')), ['a1 web', 'a2 api']);
    assert.deepEqual(await ids({ ...fed('superset', 'c.org'), hint: 'h1' }), []);
    // SPIRE's matchFederatesWithOn, over entries federating with {b}, {} and {b, c}.
    assert.deepEqual(await ids(fed('superset', 'b.org', 'c.org')), ['a2 api']);
    assert.deepEqual(await ids(fed('exact', 'b.org')), ['a1 web']);
    assert.deepEqual(await ids(fed('subset', 'b.org')), ['a1 web'], 'every trust domain of the entry is among those given');
    assert.deepEqual(await ids(fed('subset', 'b.org', 'c.org', 'd.org')), ['a1 web', 'a2 api']);
    assert.deepEqual(await ids(fed('any', 'c.org', 'd.org')), ['a2 api']);
    assert.equal((await ds.listEntries()).entries.length, 3);
  });
});

test('pagination returns every entry exactly once, in id order, and no token after the last page', async () => {
  await withDatastore(async ({ ds }) => {
    const all = (await ds.createEntries(Array.from({ length: 23 }, (_, i) => entry({ spiffeId: `spiffe://example.org/w${i}` })))).map(created);
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await ds.listEntries({ pageSize: 5, pageToken: token });
      assert.ok(page.entries.length <= 5);
      seen.push(...page.entries.map((e) => e.id));
      token = page.nextPageToken;
      pages++;
    } while (token !== undefined);
    assert.equal(pages, 5);
    assert.deepEqual(seen, all.map((e) => e.id).sort());
    await assert.rejects(ds.listEntries({ pageSize: 5, pageToken: 'not-a-token' }), (err) => isMeshidError(err, 'invalid_argument'));
    await assert.rejects(ds.listEntries({ pageSize: -1 }), (err) => isMeshidError(err, 'invalid_argument'));
  });
});

test('listEntriesByParentIds returns the children of every given parent, once each', async () => {
  await withDatastore(async ({ ds }) => {
    const parents = Array.from({ length: 700 }, (_, i) => `spiffe://example.org/meshid/agent/dc1/p${i}`);
    const made = (await ds.createEntries(parents.map((parentId) => entry({ parentId })))).map(created);
    const want = made.filter((e) => /p(1|699)$/.test(e.parentId)).map((e) => e.id).sort();
    // 700 distinct parents exceed one IN (…) chunk; duplicates in the input do not duplicate results.
    const got = await ds.listEntriesByParentIds([...parents.filter((p) => /p(1|699)$/.test(p)), parents[1]!]);
    assert.deepEqual(got.map((e) => e.id), want);
    assert.equal((await ds.listEntriesByParentIds(parents)).length, 700);
    assert.deepEqual(await ds.listEntriesByParentIds([]), []);
  });
});

test('the parent lookup uses the parent_id index', async () => {
  await withDatastore(async ({ file }) => {
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(file, { readonly: true });
    try {
      const plan = db.prepare('EXPLAIN QUERY PLAN SELECT id FROM registration_entries e WHERE e.parent_id IN (?, ?)').all('a', 'b') as Array<{ detail: string }>;
      assert.ok(plan.some((p) => p.detail.includes('registration_entries_parent_id')), JSON.stringify(plan));
    } finally {
      db.close();
    }
  });
});

test('listAllEntries reads every entry in id order, letting the event loop run between pages of a large table', async () => {
  await withDatastore(async ({ ds }) => {
    // More than two pages: one read of them all held the event loop (health probes, the process's other work) for
    // as long as every row took to build, seconds at 100,000 entries.
    const many = Array.from({ length: 12_001 }, (_, i) => entry({ spiffeId: `spiffe://example.org/w${i}`, selectors: sels(`unix:uid:${10_000 + i}`) }));
    const ids = (await ds.createEntries(many)).map(created).map((e) => e.id).sort();
    let turns = 0;
    let done = false;
    const tick = (): void => {
      if (done) return;
      turns++;
      setImmediate(tick);
    };
    setImmediate(tick);
    const listed = await ds.listAllEntries();
    done = true;
    assert.deepEqual(listed.map((e) => e.id), ids);
    assert.deepEqual(listed[0], await ds.getEntry(ids[0]!));
    assert.ok(turns >= 2, `the event loop ran ${turns} time(s) while the entries were read`);
  });
});

test('listAllEntries (raw rows) reads every entry exactly as getEntry (named rows) does: same fields, values and property order', async () => {
  await withDatastore(async ({ ds, clock, file }) => {
    const made = [
      entry(),
      entry({ spiffeId: 'spiffe://example.org/dns', dnsNames: ['b.example.org', 'a.example.org'], hint: 'front end' }),
      entry({ spiffeId: 'spiffe://example.org/fed', federatesWith: ['partner.org', 'other.org'], selectors: sels('unix:gid:0', 'docker:label:app=web') }),
      entry({ spiffeId: 'spiffe://example.org/admin', admin: true, x509SvidTtlSeconds: 1, jwtSvidTtlSeconds: 2_147_483_647 }),
      entry({ spiffeId: 'spiffe://example.org/down', downstream: true, x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0 }),
      entry({ spiffeId: 'spiffe://example.org/all', admin: true, downstream: true, dnsNames: ['x.example.org'], federatesWith: ['partner.org'], hint: 'é "quoted" \\ ✓' }),
    ];
    for (const e of made) {
      clock.advance(1_234);
      created((await ds.createEntries([e]))[0]!);
    }
    const [updated] = await ds.listAllEntries();
    clock.advance(5_000);
    await ds.updateEntry(updated!.id, { dnsNames: ['late.example.org'], hint: 'updated' });
    // A hand-edited row: the same lists spelled with other whitespace read as the same lists.
    const db = new Database(file);
    db.prepare(`UPDATE registration_entries SET dns_names = '[ ]', federates_with = ' ["partner.org"] ' WHERE spiffe_id = ?`).run('spiffe://example.org/down');
    db.close();

    const listed = await ds.listAllEntries();
    const one = await Promise.all(listed.map((e) => ds.getEntry(e.id)));
    assert.equal(listed.length, made.length);
    assert.equal(JSON.stringify(listed), JSON.stringify(one));
    assert.deepEqual(listed, one);
    assert.deepEqual(listed.find((e) => e.spiffeId === 'spiffe://example.org/down')!.federatesWith, ['partner.org']);
  });
});

test('listAllEntries refuses a row whose JSON column was damaged, as getEntry does', async () => {
  await withDatastore(async ({ ds, file }) => {
    const e = created((await ds.createEntries([entry({ dnsNames: ['a.example.org'] })]))[0]!);
    const db = new Database(file);
    db.prepare(`UPDATE registration_entries SET dns_names = '["a.example.org"' WHERE id = ?`).run(e.id);
    db.close();
    const one = await ds.getEntry(e.id).then(() => undefined, (err: unknown) => err);
    const all = await ds.listAllEntries().then(() => undefined, (err: unknown) => err);
    assert.ok(isMeshidError(one), `getEntry: ${String(one)}`);
    assert.ok(isMeshidError(all), `listAllEntries: ${String(all)}`);
    assert.equal(all.code, one.code);
    assert.equal(all.message, one.message);
  });
});
