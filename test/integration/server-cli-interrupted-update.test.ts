/**
 * `entry update --data` with a file of three entries, against a real in-process server whose datastore fails the
 * second update (a test-only wrapper around the server's own datastore object, standing in for a datastore locked by
 * another process): the operator learns how far the file got before the error, not only the error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { unavailable } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/log.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

test('entry update --data stopped by a failing server says which entries of the file were updated before the error', async (t) => {
  const tmp = tempDir('meshid-interrupted-update-');
  teardown(t).after(tmp.cleanup);
  const config = compileServerConfig({
    trust_domain: 'example.org', data_dir: path.join(tmp.dir, 'data'), bind_address: '127.0.0.1:0', admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
  });
  const server = await MeshidServer.start({ config, log: silentLogger(), clock: new FakeClock(Date.now()) });
  teardown(t).after(() => server.stop());
  const entries = ['a', 'b', 'c'].map((name) => ({
    id: `e-${name}`, spiffeId: `spiffe://example.org/${name}`, parentId: 'spiffe://example.org/meshid/server', selectors: [{ type: 'k8s', value: `pod:${name}` }],
    x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], hint: '', federatesWith: [], admin: false, downstream: false,
  }));
  assert.ok((await server.ds.createEntries(entries)).every((r) => r.entry !== undefined));
  const original = server.ds.updateEntry.bind(server.ds);
  let calls = 0;
  Object.assign(server.ds, {
    updateEntry: (...args: Parameters<typeof original>) => (++calls === 2 ? Promise.reject(unavailable('the datastore is locked by another process; retry shortly')) : original(...args)),
  });

  const file = path.join(tmp.dir, 'entries.json');
  fs.writeFileSync(file, JSON.stringify({
    entries: entries.map((e) => ({ entry_id: e.id, spiffe_id: e.spiffeId, parent_id: e.parentId, selectors: e.selectors, hint: 'new' })),
  }));
  const r = await runNode(SERVER_MAIN, ['entry', 'update', '-data', file, '--admin-socket', config.adminSocket]);
  assert.equal(r.code, 1);
  assert.match(r.out, /^Updated 1 of 3 entries:\n\nEntry ID +: e-a\n/);
  assert.equal(
    r.err,
    'Stopped after 1 of 3 entries of the file (1 updated): entry 2 (e-b) got no answer (the server updates an entry all or none), ' +
      'and the 1 after it was not sent; run the file again: each entry is replaced whole, so those updated already stay as they are\n' +
      'Error: Unavailable: the datastore is locked by another process; retry shortly\n',
  );
  assert.deepEqual((await server.ds.listAllEntries()).map((e) => [e.id, e.hint]), [['e-a', 'new'], ['e-b', ''], ['e-c', '']]);
});
