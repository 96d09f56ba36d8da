/**
 * grpc.health.v1.Health as meshid serves it (health.proto's contract), on a real grpc-js server on a Unix socket with
 * a real client; the status's source is a variable and time is a FakeClock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { GrpcHealthService, WATCH_RECHECK_MS } from '../../../src/common/grpc/health-service.js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceClient, serviceOf } from '../../../src/common/grpc/service.js';
import { watchHealth } from '../../support/health-watch.js';
import { tempDir } from '../../support/server-kit.js';

interface Served {
  target: string;
  health: GrpcHealthService;
  clock: FakeClock;
  check(service: string): Promise<string>;
}

async function serve(t: { after(fn: () => void): void }, serving: () => boolean | Promise<boolean>, options: { reuseMs?: number } = {}): Promise<Served> {
  const { dir, cleanup } = tempDir('meshid-health-service-');
  const clock = new FakeClock(Date.now());
  const health = new GrpcHealthService({ services: ['test.Service'], serving, clock, daemon: 'the test daemon', ...options });
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health'), health.implementation);
  const socket = path.join(dir, 'h.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const client = new Health(`unix://${socket}`, grpc.credentials.createInsecure());
  t.after(() => {
    client.close();
    server.forceShutdown();
    cleanup();
  });
  const check = (service: string): Promise<string> =>
    new Promise((resolve, reject) =>
      (client as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res?: { status?: string }) => void) => void>)['Check']!({ service }, (err, res) =>
        err ? reject(err) : resolve(res?.status ?? 'UNKNOWN'),
      ),
    );
  return { target: `unix://${socket}`, health, clock, check };
}

test('Watch sends the status at once, then a message each time it changes', { timeout: 30_000 }, async (t) => {
  let serving = true;
  const s = await serve(t, () => serving);
  const watch = watchHealth(s.target, 'test.Service');
  t.after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  serving = false;
  s.clock.advance(WATCH_RECHECK_MS);
  assert.deepEqual(await watch.received(2), ['SERVING', 'NOT_SERVING']);
  serving = true;
  s.clock.advance(WATCH_RECHECK_MS);
  assert.deepEqual(await watch.received(3), ['SERVING', 'NOT_SERVING', 'SERVING']);
  assert.equal(await s.check('test.Service'), 'SERVING');
  assert.equal(await s.check(''), 'SERVING');
});

test('an unknown service: Check is NOT_FOUND, Watch answers SERVICE_UNKNOWN and stays open', { timeout: 30_000 }, async (t) => {
  const s = await serve(t, () => true);
  await assert.rejects(s.check('other.Service'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && /unknown service "other\.Service"/.test(err.details));
  const watch = watchHealth(s.target, 'other.Service');
  t.after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVICE_UNKNOWN']);
  s.clock.advance(WATCH_RECHECK_MS);
  // The stream is still open: shutdown still has it to end.
  s.health.shutdown();
  assert.equal((await watch.ended).code, grpc.status.UNAVAILABLE);
  assert.deepEqual(watch.statuses, ['SERVICE_UNKNOWN'], 'an unknown service is not reported NOT_SERVING');
});

test('a status check that throws answers NOT_SERVING, not UNKNOWN', { timeout: 30_000 }, async (t) => {
  const s = await serve(t, () => {
    throw new Error('the datastore is closed');
  });
  assert.equal(await s.check('test.Service'), 'NOT_SERVING');
  const rejecting = await serve(t, () => Promise.reject(new Error('the datastore is closed')));
  assert.equal(await rejecting.check(''), 'NOT_SERVING');
});

test('after shutdown: Check answers NOT_SERVING, open watchers are told NOT_SERVING and ended UNAVAILABLE, a new Watch too', { timeout: 30_000 }, async (t) => {
  const s = await serve(t, () => true);
  const watch = watchHealth(s.target);
  t.after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  s.health.shutdown();
  assert.deepEqual(await watch.received(2), ['SERVING', 'NOT_SERVING']);
  const end = await watch.ended;
  assert.equal(end.code, grpc.status.UNAVAILABLE);
  assert.equal(end.details, 'the test daemon is shutting down');
  assert.equal(await s.check('test.Service'), 'NOT_SERVING');
  const late = watchHealth(s.target, 'test.Service');
  t.after(() => late.close());
  assert.deepEqual(await late.received(1), ['NOT_SERVING']);
  assert.equal((await late.ended).code, grpc.status.UNAVAILABLE);
});

test('reuseMs: every Check and Watch within the period shares one answer of the status source; after it, the source is asked again', { timeout: 30_000 }, async (t) => {
  let asked = 0;
  let serving = true;
  const { health, clock, check: checkService } = await serve(t, () => (asked++, serving), { reuseMs: WATCH_RECHECK_MS });
  const check = (): Promise<string> => checkService('');
  for (let i = 0; i < 10; i++) assert.equal(await check(), 'SERVING');
  assert.equal(asked, 1);
  serving = false;
  clock.advance(WATCH_RECHECK_MS - 1);
  assert.equal(await check(), 'SERVING', 'the answer of the period');
  clock.advance(1);
  assert.equal(await check(), 'NOT_SERVING');
  assert.equal(asked, 2);
  // Shutdown is not held back by a reused SERVING.
  serving = true;
  clock.advance(WATCH_RECHECK_MS);
  assert.equal(await check(), 'SERVING');
  health.shutdown();
  assert.equal(await check(), 'NOT_SERVING');
});

test('a Watch the client cancels is dropped: the recheck timer stops once no watcher is left', { timeout: 30_000 }, async (t) => {
  let asked = 0;
  const s = await serve(t, () => (asked++, true));
  const watch = watchHealth(s.target);
  assert.deepEqual(await watch.received(1), ['SERVING']);
  assert.equal(s.clock.pendingTimers(), 1);
  watch.close();
  await watch.ended;
  // The server hears of the cancel shortly after the client ends its side.
  while (s.clock.pendingTimers() > 0) {
    s.clock.advance(WATCH_RECHECK_MS);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const before = asked;
  s.clock.advance(10 * WATCH_RECHECK_MS);
  assert.equal(asked, before, 'nothing looks at the status with no watcher');
});
