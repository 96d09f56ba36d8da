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
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

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
  const doc = JSON.parse(cli.out) as { results: Array<{ status: { code: number }; entry: { id: string; revision: number } }> };
  assert.equal(doc.results[0]!.status.code, 6);
  assert.equal(doc.results[0]!.entry.id, id);
  assert.equal(doc.results[0]!.entry.revision, created!.entry!.revision, 'the stored entry, not the one sent');
});

test('DeleteEntries answers an empty ID INVALID_ARGUMENT in its own result, an unknown one NOT_FOUND, and deletes the rest', async () => {
  const [r] = (await admin.call('Entries', 'CreateEntries', { entries: [entry('del', 'web', ['t:del'])] })).results!;
  const id = r!.entry!.id!;
  const res = await admin.call('Entries', 'DeleteEntries', { ids: ['', 'e-nosuchentry', id] });
  assert.deepEqual(res.results!.map((x) => [x.id ?? '', x.status?.code ?? 0]), [['', 3], ['e-nosuchentry', 5], [id, 0]]);
  assert.match(res.results![0]!.status!.message!, /entry ID is empty/);
  await assert.rejects(admin.call('Entries', 'GetEntry', { id }), /not found/);
});
