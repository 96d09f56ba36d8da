/**
 * What an operator or script used to spire-server meets at meshid-server: the entry and agent commands and the admin
 * API answering as SPIRE's do (duplicates, per-item statuses, count commands, filters, order), against one real server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess, type CliResult, type ServerProcess } from '../support/server-process.js';

const NODE_ALIAS_PARENT = 'spiffe://example.org/meshid/server';

let dir: string;
let cleanup: () => void;
let server: ServerProcess;
let admin: AdminClient;

before(async () => {
  ({ dir, cleanup } = tempDir('meshid-spire-habits-'));
  server = await startServerProcess(dir);
  admin = new AdminClient(server.adminSocket);
});

after(async () => {
  admin?.close();
  await server?.stop();
  cleanup?.();
});

function assertOk(r: CliResult): void {
  assert.equal(r.code, 0, `expected exit 0, got ${r.code}; stderr: ${r.err}`);
}

/** Entries under a path of the test's own, so tests sharing the server do not see each other's. */
function entry(test: string, name: string, selectors: string[], extra: Record<string, unknown> = {}) {
  return {
    spiffe_id: `spiffe://example.org/${test}/${name}`,
    parent_id: NODE_ALIAS_PARENT,
    selectors: selectors.map((s) => ({ type: s.slice(0, s.indexOf(':')), value: s.slice(s.indexOf(':') + 1) })),
    ...extra,
  };
}

test('a duplicate create is ALREADY_EXISTS carrying the entry it duplicates, as SPIRE answers; a re-sent file naming its own entry IDs too', async () => {
  const first = entry('dup', 'web', ['t:dup']);
  const [created] = (await admin.call('Entries', 'CreateEntries', { entries: [first] })).results!;
  assert.equal(created!.status?.code ?? 0, 0);
  const id = created!.entry!.id!;
  // A twin, and the same entry under its own ID, as an exported file created a second time would send it.
  const again = (await admin.call('Entries', 'CreateEntries', { entries: [first, { ...first, id }] })).results!;
  for (const r of again) {
    assert.equal(r.status?.code, 6, JSON.stringify(r.status));
    assert.match(r.status?.message ?? '', new RegExp(`same selectors already exists \\(${id}\\)`));
    assert.equal(r.entry?.id, id, 'the result carries the existing entry');
    assert.equal(r.entry?.spiffe_id, first.spiffe_id);
  }
  // `entry create -output json` shows it, so a script learns the ID of what it meant to create.
  const file = path.join(dir, 'dup.json');
  fs.writeFileSync(file, JSON.stringify({ entries: [{ ...first, entry_id: id }] }));
  const cli = await server.cli(['entry', 'create', '-data', file, '-output', 'json']);
  assert.equal(cli.code, 1);
  const doc = JSON.parse(cli.out) as { results: Array<{ status: { code: number }; entry: { id: string; revision_number: string } }> };
  assert.equal(doc.results[0]!.status.code, 6);
  assert.equal(doc.results[0]!.entry.id, id);
  assert.equal(doc.results[0]!.entry.revision_number, String(created!.entry!.revision ?? 0), 'the stored entry, not the one sent');
});

test('DeleteEntries answers an empty ID INVALID_ARGUMENT in its own result, an unknown one NOT_FOUND, and deletes the rest', async () => {
  const [r] = (await admin.call('Entries', 'CreateEntries', { entries: [entry('del', 'web', ['t:del'])] })).results!;
  const id = r!.entry!.id!;
  const res = await admin.call('Entries', 'DeleteEntries', { ids: ['', 'e-nosuchentry', id] });
  assert.deepEqual(res.results!.map((x) => [x.id ?? '', x.status?.code ?? 0]), [['', 3], ['e-nosuchentry', 5], [id, 0]]);
  assert.match(res.results![0]!.status!.message!, /entry ID is empty/);
  await assert.rejects(admin.call('Entries', 'GetEntry', { id }), /not found/);
});

test('DeleteEntries refuses more than 10,000 IDs in one call, naming the limit, and deletes none; entry delete --file splits a larger file into calls the server takes', async () => {
  const ids = await Promise.all(['first', 'last'].map(async (name) => (await admin.call('Entries', 'CreateEntries', { entries: [entry('bulk-del', name, ['t:bulk-del'])] })).results![0]!.entry!.id!));
  const named = [ids[0]!, ...Array.from({ length: 9_999 }, (_, i) => `e-gone-${i}`), ids[1]!];
  // Before: taken whole, one datastore transaction however many IDs a client sent.
  await assert.rejects(
    admin.call('Entries', 'DeleteEntries', { ids: named }),
    (err: Error) => /^10001 entry IDs in one call: at most 10000 are accepted; split them into calls of 10000 or fewer$/.test(err.message) || assert.fail(err.message),
  );
  for (const id of ids) assert.equal((await admin.call('Entries', 'GetEntry', { id })).id, id, 'nothing was deleted');
  const file = path.join(dir, 'bulk-delete.json');
  fs.writeFileSync(file, JSON.stringify({ ids: named }));
  const r = await server.cli(['entry', 'delete', '--file', file]);
  assert.equal(r.code, 1, r.err);
  assert.equal(r.out, `Deleted entry with ID: ${ids[0]}\nDeleted entry with ID: ${ids[1]}\n`);
  assert.equal(r.err.split('\n').filter((l) => /^Error: NotFound: registration entry e-gone-\d+ not found$/.test(l)).length, 9_999);
  for (const id of ids) await assert.rejects(admin.call('Entries', 'GetEntry', { id }), /not found/);
});

test('CreateEntries refuses more than 10,000 entries in one call as DeleteEntries does, saying to split them, and creates none', async () => {
  const entries = Array.from({ length: 10_001 }, (_, i) => entry('bulk-create', `w${i}`, ['t:bulk-create']));
  await assert.rejects(
    admin.call('Entries', 'CreateEntries', { entries }),
    (err: Error) => /^10001 entries in one call: at most 10000 are accepted; split them into calls of 10000 or fewer$/.test(err.message) || assert.fail(err.message),
  );
  const listed = await admin.call('Entries', 'ListEntries', { selectors: [{ type: 't', value: 'bulk-create' }] });
  assert.equal((listed.entries ?? []).length, 0, 'nothing was created');
});

test('entry count and agent count print spire-server\'s lines, with the filters of entry show and agent list', async () => {
  for (const [i, sels] of [['t:count', 'u:1'], ['t:count'], ['t:count', 'u:2']].entries()) {
    const [r] = (await admin.call('Entries', 'CreateEntries', { entries: [entry('count', `w${i}`, sels)] })).results!;
    assert.equal(r!.status?.code ?? 0, 0);
  }
  const count = (args: string[]) => server.cli(['entry', 'count', ...args]);
  let r = await count(['-selector', 't:count']);
  assertOk(r);
  assert.equal(r.out, '3 registration entries\n');
  r = await count(['-selector', 't:count', '-matchSelectorsOn', 'exact']);
  assert.equal(r.out, '1 registration entry\n');
  r = await count(['-spiffeID', 'spiffe://example.org/count/w0', '-output', 'json']);
  assert.deepEqual(JSON.parse(r.out), { count: 1 });
  r = await server.cli(['agent', 'count']);
  assertOk(r);
  assert.equal(r.out, '0 attested agents\n');
  r = await server.cli(['agent', 'count', '-banned', 'true', '-output', 'json']);
  assert.deepEqual(JSON.parse(r.out), { count: 0 });
});

test('entry show -downstream (and entry count -downstream) lists only the entries marked downstream; without it, every entry', async () => {
  await admin.call('Entries', 'CreateEntries', {
    entries: [entry('downstream', 'nested', ['t:downstream'], { downstream: true }), entry('downstream', 'plain', ['t:downstream'])],
  });
  const ids = (r: CliResult): string[] => [...r.out.matchAll(/^SPIFFE ID +: (.*)$/gm)].map((m) => m[1]!);
  const only = await server.cli(['entry', 'show', '-selector', 't:downstream', '-downstream']);
  assertOk(only);
  assert.deepEqual(ids(only), ['spiffe://example.org/downstream/nested']);
  const all = await server.cli(['entry', 'show', '-selector', 't:downstream']);
  assert.deepEqual(ids(all).sort(), ['spiffe://example.org/downstream/nested', 'spiffe://example.org/downstream/plain']);
  assert.equal((await server.cli(['entry', 'count', '-downstream', '-selector', 't:downstream'])).out, '1 registration entry\n');
  // The admin API's filter itself.
  const listed = await admin.call('Entries', 'ListEntries', { selectors: [{ type: 't', value: 'downstream' }], selector_match: 'any', downstream: true });
  assert.deepEqual(listed.entries!.map((e) => e.spiffe_id), ['spiffe://example.org/downstream/nested']);
});

test('entry show lists entries in spire-server\'s order (SPIFFE ID, parent, TTLs, selectors), not by their random IDs', async () => {
  // IDs chosen against that order: listed by ID, the last would come first.
  const wanted = [
    entry('order', 'a', ['t:order', 'u:1'], { id: 'order-5' }),
    entry('order', 'a', ['t:order', 'u:2'], { id: 'order-4' }),
    entry('order', 'a', ['t:order', 'u:2', 'v:1'], { id: 'order-3' }),
    entry('order', 'a', ['t:order'], { id: 'order-2', x509_svid_ttl: 60 }),
    entry('order', 'b', ['t:order'], { id: 'order-1' }),
  ];
  const created = (await admin.call('Entries', 'CreateEntries', { entries: wanted })).results!;
  assert.ok(created.every((r) => (r.status?.code ?? 0) === 0), JSON.stringify(created.map((r) => r.status)));
  const r = await server.cli(['entry', 'show', '-selector', 't:order']);
  assertOk(r);
  assert.deepEqual([...r.out.matchAll(/^Entry ID +: (.*)$/gm)].map((m) => m[1]), ['order-5', 'order-4', 'order-3', 'order-2', 'order-1']);
  const json = JSON.parse((await server.cli(['entry', 'show', '-selector', 't:order', '-output', 'json'])).out) as { entries: Array<{ id: string }> };
  assert.deepEqual(json.entries.map((e) => e.id), ['order-5', 'order-4', 'order-3', 'order-2', 'order-1']);
});

test('entry create -data takes a SPIRE export of 10,000 entries over 4 MiB, and reads every twin back when it is created again', { timeout: 120_000 }, async () => {
  // ~530 bytes each, as Kubernetes selectors make them: one 10,000-entry call would exceed the server's 4 MiB.
  const entries = Array.from({ length: 10_000 }, (_, i) => ({
    spiffe_id: `spiffe://example.org/big/ns/default/sa/w${i}`,
    parent_id: NODE_ALIAS_PARENT,
    selectors: [{ type: 'k8s', value: `pod-label:app:${'x'.repeat(420)}${i}` }],
  }));
  const file = path.join(dir, 'big.json');
  fs.writeFileSync(file, JSON.stringify({ entries }));
  assert.ok(fs.statSync(file).size > 4 * 1024 * 1024);
  const first = await server.cli(['entry', 'create', '-data', file]);
  assertOk(first);
  assert.match(first.out, /^Created 10000 of 10000 entries:/);
  assert.equal((await server.cli(['entry', 'count', '-selector', 'k8s:pod-label:app:' + 'x'.repeat(420) + '0'])).out, '1 registration entry\n');
  // Created again, every result is ALREADY_EXISTS with the stored entry: answers larger than grpc-js's 4 MiB default.
  const again = await server.cli(['entry', 'create', '-data', file, '-output', 'json']);
  assert.equal(again.code, 1, again.err);
  const doc = JSON.parse(again.out) as { results: Array<{ status: { code: number }; entry: { id: string; spiffe_id: { trust_domain: string; path: string } } }> };
  assert.equal(doc.results.length, 10_000);
  assert.ok(doc.results.every((r, i) => r.status.code === 6 && r.entry.id.startsWith('e-') && `spiffe://${r.entry.spiffe_id.trust_domain}${r.entry.spiffe_id.path}` === entries[i]!.spiffe_id));
});

test('entry delete -file deletes the entries of a spire-server delete file ({"ids": [...]}), each refusal on its own line', async () => {
  const res = await admin.call('Entries', 'CreateEntries', { entries: [entry('delfile', 'a', ['t:delfile']), entry('delfile', 'b', ['t:delfile'])] });
  const ids = res.results!.map((r) => r.entry!.id!);
  const file = path.join(dir, 'delete.json');
  fs.writeFileSync(file, JSON.stringify({ ids: [...ids, 'e-nosuchentry'] }));
  const r = await server.cli(['entry', 'delete', '-file', file]);
  assert.equal(r.code, 1, r.err);
  assert.equal(r.out, ids.map((id) => `Deleted entry with ID: ${id}\n`).join(''));
  assert.equal(r.err, 'Error: NotFound: registration entry e-nosuchentry not found\n');
  assert.equal((await server.cli(['entry', 'count', '-selector', 't:delfile'])).out, '0 registration entries\n');
  const notIds = path.join(dir, 'not-ids.json');
  fs.writeFileSync(notIds, JSON.stringify({ entries: [] }));
  const bad = await server.cli(['entry', 'delete', '-file', notIds]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /must be a JSON object with an "ids" array of entry IDs/);
});

test('entry update -data replaces each entry its entry_id names, whole, as spire-server does; a refused one is its own line', async () => {
  const [r] = (await admin.call('Entries', 'CreateEntries', {
    entries: [entry('updfile', 'a', ['t:updfile'], { hint: 'blue', dns_names: ['a.example.org'], x509_svid_ttl: 600 })],
  })).results!;
  const id = r!.entry!.id!;
  const file = path.join(dir, 'update.json');
  // A spire-server -data file (IDs as strings, as its RegistrationEntries take them), edited: no hint, DNS names or TTL any more.
  fs.writeFileSync(file, JSON.stringify({
    entries: [
      { entry_id: id, spiffe_id: 'spiffe://example.org/updfile/renamed', parent_id: NODE_ALIAS_PARENT, selectors: [{ type: 't', value: 'updfile2' }] },
      { entry_id: 'e-nosuchentry', spiffe_id: 'spiffe://example.org/updfile/x', parent_id: NODE_ALIAS_PARENT, selectors: [{ type: 't', value: 'x' }] },
    ],
  }));
  const u = await server.cli(['entry', 'update', '-data', file]);
  assert.equal(u.code, 1, u.err);
  assert.match(u.out, /^Updated 1 of 2 entries:\n/);
  assert.equal(u.err, 'Failed to update e-nosuchentry: NotFound: registration entry e-nosuchentry not found\n');
  const got = await admin.call('Entries', 'GetEntry', { id });
  assert.equal(got.spiffe_id, 'spiffe://example.org/updfile/renamed');
  assert.deepEqual(got.selectors, [{ type: 't', value: 'updfile2' }]);
  assert.equal(got.hint ?? '', '', 'fields the file leaves out are reset, as SPIRE resets them');
  assert.deepEqual(got.dns_names ?? [], []);
  assert.equal(got.x509_svid_ttl ?? 0, 0);
  fs.writeFileSync(file, JSON.stringify({ entries: [{ spiffe_id: 'spiffe://example.org/updfile/y', parent_id: NODE_ALIAS_PARENT, selectors: [{ type: 't', value: 'y' }] }] }));
  const unnamed = await server.cli(['entry', 'update', '-data', file]);
  assert.equal(unnamed.code, 1);
  assert.match(unnamed.err, /entry 1 has no entry_id/);
});

test('the executable answers spire-server\'s jwt mint -write with what to do instead, as the README says (logger is meshid-server logger now: server-logger.test)', async () => {
  const write = await server.cli(['jwt', 'mint', '-spiffeID', 'spiffe://example.org/tool', '-audience', 'x', '-write', 'token.jwt']);
  assert.equal(write.code, 1);
  assert.equal(write.out, '');
  assert.match(write.err, /^Error: InvalidArgument: flag -write is not supported by meshid: the token goes to standard output: redirect it/);
});
