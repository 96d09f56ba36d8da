/**
 * Stopping a gRPC server of meshid-server: a call still open when the grace period ends has its connection cut, on a
 * server with channelz off (BASE_SERVER_OPTIONS), where grpc-js's own forceShutdown cuts nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { BASE_SERVER_OPTIONS } from '../../../src/common/grpc/server-options.js';
import { shutdownGrpcServer } from '../../../src/server/grpc-shutdown.js';
import { tempDir } from '../../support/server-kit.js';
import { teardown } from '../../support/teardown.js';

const identity = (b: Buffer): Buffer => b;
/** A server-streaming method whose handler never ends its stream: a call that outlasts any grace period. */
const HANG: grpc.ServiceDefinition = {
  hang: { path: '/meshid.test.Hang/Hang', requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};

/**
 * A server on a Unix socket in `dir` with one call to it open (its first message received); `ended` is its status,
 * `close` cancels it and closes the client.
 */
async function serverWithOpenCall(dir: string): Promise<{ server: grpc.Server; ended: Promise<grpc.StatusObject>; close: () => void }> {
  const server = new grpc.Server(BASE_SERVER_OPTIONS);
  server.addService(HANG, { hang: (call: grpc.ServerWritableStream<Buffer, Buffer>) => void call.write(Buffer.from('open')) });
  const address = `unix://${path.join(dir, 'hang.sock')}`;
  await new Promise<void>((resolve, reject) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const Client = grpc.makeGenericClientConstructor(HANG, 'Hang');
  const client = new Client(address, grpc.credentials.createInsecure());
  const call = (client as unknown as { hang(req: Buffer): grpc.ClientReadableStream<Buffer> }).hang(Buffer.alloc(0));
  call.on('error', () => undefined);
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  await new Promise<void>((resolve) => call.once('data', () => resolve()));
  return {
    server,
    ended,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

test('a call still open when the grace period ends is cut (channelz off, where grpc-js forceShutdown alone leaves it)', async (t) => {
  const { dir, cleanup } = tempDir('meshid-grpc-shutdown-');
  teardown(t).after(cleanup);
  const { server, ended, close } = await serverWithOpenCall(dir);
  teardown(t).after(close);
  await shutdownGrpcServer(server, 0);
  // A call the shutdown left open would otherwise hold the test until the runner's limit, saying only that it timed out.
  const stillOpen = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the call was still open 10 s after the shutdown: it was not cut')), 10_000).unref());
  const status = await Promise.race([ended, stillOpen]);
  // The client sees its connection dropped (UNAVAILABLE), which clients retry on another server; not a status the
  // handler sent.
  assert.equal(status.code, grpc.status.UNAVAILABLE, status.details);
});

test('a grpc-js whose listener records hold their sessions otherwise (stubbed: a Map reshaped in place) stops without throwing out of the grace timer', async (t) => {
  const { dir, cleanup } = tempDir('meshid-grpc-shutdown-');
  teardown(t).after(cleanup);
  const { server, close } = await serverWithOpenCall(dir);
  teardown(t).after(close);
  const listeners = (server as unknown as { http2Servers: Map<unknown, { sessions: unknown }> }).http2Servers;
  for (const listener of listeners.values()) listener.sessions = new Map([...(listener.sessions as Set<unknown>)].map((s) => [s, { opened: 0 }]));
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => void uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  teardown(t).after(() => process.off('uncaughtException', onUncaught));
  await shutdownGrpcServer(server, 0);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(uncaught, []);
});
