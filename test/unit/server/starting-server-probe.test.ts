/**
 * The server's health listener binds early in the start (server.ts) and answers with StartingServerProbe until the
 * agent API listens: a real listener on loopback, probed over HTTP, before and after the server's probe is handed over.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpHealthListener } from '../../../src/common/health/http-health-listener.js';
import { silentLogger } from '../../../src/common/log.js';
import { StartingServerProbe } from '../../../src/server/server-health.js';
import { healthBody, probe } from '../../support/http-probe.js';

test('while the server starts, ready answers 500 saying so and live 200; once it serves, both answer as the server\'s probe does', async (t) => {
  const starting = new StartingServerProbe();
  const listener = await HttpHealthListener.start({ bindAddress: '127.0.0.1', bindPort: 0, livePath: '/live', readyPath: '/ready' }, starting, silentLogger());
  t.after(() => listener.close());
  const ready = await probe(listener.address, '/ready');
  assert.equal(ready.status, 500);
  assert.match(String(healthBody(ready, 'server')['reason']), /^meshid-server is starting/);
  assert.equal((await probe(listener.address, '/live')).status, 200, 'a restart would only start it over');

  starting.serving({ name: 'server', live: () => ({ ok: false, details: { reason: 'the datastore cannot be read' } }), ready: () => ({ ok: true, details: { agent_api: '127.0.0.1:8081' } }) });
  const served = await probe(listener.address, '/ready');
  assert.equal(served.status, 200);
  assert.deepEqual(healthBody(served, 'server'), { agent_api: '127.0.0.1:8081' });
  assert.equal((await probe(listener.address, '/live')).status, 500);
});
