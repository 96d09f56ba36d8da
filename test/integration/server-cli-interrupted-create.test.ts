/**
 * `entry create --data` with a file of two batches, against a real in-process server whose datastore fails the second
 * batch (a test-only wrapper around the server's own datastore object, standing in for a datastore locked by another
 * process): the operator learns how far the file got before the error, not only the error.
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

test('entry create --data stopped by a failing server says how many entries of the file were created before the error', async (t) => {
  const tmp = tempDir('meshid-interrupted-create-');
  teardown(t).after(tmp.cleanup);
  const config = compileServerConfig({
    trust_domain: 'example.org', data_dir: path.join(tmp.dir, 'data'), bind_address: '127.0.0.1:0', admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
  });
  const server = await MeshidServer.start({ config, log: silentLogger(), clock: new FakeClock(Date.now()) });
  teardown(t).after(() => server.stop());
  const original = server.ds.createEntries.bind(server.ds);
  let calls = 0;
  Object.assign(server.ds, {
    createEntries: (...args: Parameters<typeof original>) => (++calls === 2 ? Promise.reject(unavailable('the datastore is locked by another process; retry shortly')) : original(...args)),
  });

  // 10,001 entries: the first 10,000 go in one batch, the last in a second one.
  const entries = Array.from({ length: 10_001 }, (_, i) => ({
    spiffe_id: `spiffe://example.org/batch/w${i}`, parent_id: 'spiffe://example.org/meshid/server', selectors: [{ type: 'k8s', value: `pod:${i}` }],
  }));
  const file = path.join(tmp.dir, 'entries.json');
  fs.writeFileSync(file, JSON.stringify({ entries }));
  const r = await runNode(SERVER_MAIN, ['entry', 'create', '-data', file, '--admin-socket', config.adminSocket]);
  assert.equal(r.code, 1);
  assert.match(r.out, /^Created 10000 of 10001 entries:\n/);
  assert.equal(
    r.err,
    'Stopped after 10000 of 10001 entries of the file (10000 created): entry 10001 got no answer (the server creates such a batch all or none); ' +
      'run the file again: what exists is refused AlreadyExists and the rest is created\n' +
      'Error: Unavailable: the datastore is locked by another process; retry shortly\n',
  );
  assert.equal(await server.ds.countEntries(), 10_000);
});
