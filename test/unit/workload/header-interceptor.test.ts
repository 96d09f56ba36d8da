import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { workloadSecurityHeaderInterceptor } from '../../../src/agent/endpoints/interceptors.js';
import { workloadApiServiceDefinition } from '../../../src/agent/workload/handler.js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';

/**
 * The interceptor on its own, in front of handlers that only record that they ran: it must stop header-less Workload
 * API calls before any handler code, and leave other services (SDS, health) alone.
 */
let server: grpc.Server;
let dir: string;
let target: string;
const ran: string[] = [];
const clients: grpc.Client[] = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-icpt-'));
  target = `unix://${path.join(dir, 'api.sock')}`;
  server = new grpc.Server({ interceptors: [workloadSecurityHeaderInterceptor] });
  const recordUnary = (name: string) => (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
    ran.push(name);
    cb(null, {});
  };
  const recordStream = (name: string) => (call: grpc.ServerWritableStream<unknown, unknown>) => {
    ran.push(name);
    call.end();
  };
  server.addService(workloadApiServiceDefinition(), {
    FetchX509SVID: recordStream('FetchX509SVID'),
    FetchX509Bundles: recordStream('FetchX509Bundles'),
    FetchJWTBundles: recordStream('FetchJWTBundles'),
    FetchJWTSVID: recordUnary('FetchJWTSVID'),
    ValidateJWTSVID: recordUnary('ValidateJWTSVID'),
  });
  server.addService(serviceOf(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health'), {
    Check: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      ran.push('Health.Check');
      cb(null, { status: 'SERVING' });
    },
    Watch: recordStream('Health.Watch'),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
});

after(() => {
  for (const c of clients) c.close();
  server.forceShutdown();
  fs.rmSync(dir, { recursive: true, force: true });
});

function client(def: grpc.ServiceDefinition, name: string): grpc.Client {
  const Ctor = grpc.makeGenericClientConstructor(def, name);
  const c = new Ctor(target, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

test('without the header, no Workload API handler runs: unary and streaming calls end INVALID_ARGUMENT', async () => {
  const c = client(workloadApiServiceDefinition(), 'SpiffeWorkloadAPI') as unknown as Record<string, (...a: unknown[]) => unknown>;
  const unaryCode = await new Promise<number>((resolve) =>
    c['FetchJWTSVID']!({ audience: ['x'] }, new grpc.Metadata(), (err: grpc.ServiceError | null) => resolve(err?.code ?? 0)),
  );
  assert.equal(unaryCode, grpc.status.INVALID_ARGUMENT);
  const stream = c['FetchX509SVID']!({}, new grpc.Metadata()) as grpc.ClientReadableStream<unknown>;
  const streamCode = await new Promise<number>((resolve) => {
    stream.on('error', (err: grpc.ServiceError) => resolve(err.code));
    stream.on('end', () => resolve(0));
  });
  assert.equal(streamCode, grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(ran, []);
});

test('with the header, the call reaches the handler', async () => {
  const c = client(workloadApiServiceDefinition(), 'SpiffeWorkloadAPI') as unknown as Record<string, (...a: unknown[]) => unknown>;
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  const code = await new Promise<number>((resolve) => c['ValidateJWTSVID']!({}, md, (err: grpc.ServiceError | null) => resolve(err?.code ?? 0)));
  assert.equal(code, grpc.status.OK);
  assert.deepEqual(ran, ['ValidateJWTSVID']);
});

test('other services on the socket (health, SDS) are not asked for the header', async () => {
  const c = client(serviceOf(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health'), 'Health') as unknown as Record<string, (...a: unknown[]) => unknown>;
  const res = await new Promise<{ status?: string }>((resolve, reject) =>
    c['Check']!({}, new grpc.Metadata(), (err: grpc.ServiceError | null, r: { status?: string }) => (err ? reject(err) : resolve(r))),
  );
  assert.equal(res.status, 'SERVING');
});
