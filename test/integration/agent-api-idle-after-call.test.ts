/**
 * A connection without an agent SVID is closed once idle, counted from its last call's end as well as from its start
 * (agent-api-connections.ts): an agent's attestation connection is done with once its Attest is, and one left open
 * after a call would otherwise hold its place until its age. Shown on a server whose idle timer is a fraction of a
 * second and whose age is far beyond the test, so only the idle timer can close the connection. In-process server on
 * a FakeClock hours behind real time (OpenSSL judges certificates by real time); the timers are the transport's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { FakeClock } from '../../src/common/clock.js';
import { startServerWithLimits } from '../support/limited-server.js';
import { event } from '../support/event.js';
import { teardown } from '../support/teardown.js';

test('a connection without a client certificate is closed once idle after its call has ended, long before its age', async (t) => {
  const clock = new FakeClock(Date.now() - 12 * 3_600_000);
  const { cluster, server } = await startServerWithLimits('meshid-agent-api-idle-after-call-', clock, {
    unauthenticatedIdleMs: 500,
    unauthenticatedMaxAgeMs: 600_000,
    unauthenticatedGraceMs: 500,
  });
  teardown(t).after(() => cluster.cleanup());
  const session = http2.connect(`https://127.0.0.1:${server.agentPort}`, { rejectUnauthorized: false, servername: 'meshid-server' });
  session.on('error', () => {});
  teardown(t).after(() => session.destroy());
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)));
  const closed = new Promise<void>((resolve) => session.once('close', resolve));
  // Opened with the connection, so it reaches the server before the idle timer could close it; refused at once (no
  // certificate), and ended by the client, so the call is over on both sides.
  const call = session.request(
    { ':method': 'POST', ':path': '/meshid.agent.v1.Node/Sync', 'content-type': 'application/grpc', te: 'trailers' },
    { endStream: true },
  );
  call.on('error', () => {});
  call.resume();
  await event('the call to end', new Promise((resolve) => call.once('close', resolve)));
  assert.equal(await event('the GOAWAY once idle after the call', goaway), http2.constants.NGHTTP2_NO_ERROR);
  await event('the connection to close', closed);
});
