import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { addReflection } from '../../../src/common/grpc/reflection.js';
import { tempDir } from '../../support/server-kit.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import type { Logger } from '../../../src/common/log.js';
import { ask, reflectionClient } from '../../support/reflection-client.js';

async function serve(t: { after(fn: () => void): void }, protoFiles: string[], log?: Logger): Promise<string> {
  const { dir, cleanup } = tempDir('meshid-reflection-');
  const server = new grpc.Server();
  t.after(() => {
    server.forceShutdown();
    cleanup();
  });
  addReflection(server, protoFiles, log);
  const socket = path.join(dir, 'r.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  return socket;
}

test('reflection (v1 and v1alpha) lists the Workload API and SDS services on a Unix socket', async (t) => {
  const socket = await serve(t, ['workload/workload.proto', 'envoy/service/secret/v3/sds.proto', 'grpc/health/v1/health.proto']);
  for (const version of ['v1', 'v1alpha'] as const) {
    const client = reflectionClient(version, socket);
    const replies = await ask(client, [{ list_services: '' }, { file_containing_symbol: 'SpiffeWorkloadAPI' }]);
    client.close();
    const names = (replies[0]!.list_services_response?.service ?? []).map((s) => s.name);
    assert.equal(replies[1]!.error_response, undefined, JSON.stringify(replies[1]));
    assert.ok(Buffer.concat(replies[1]!.file_descriptor_response!.file_descriptor_proto).includes('FetchX509SVID'), 'the descriptor of the package-less service is found by its plain name');
    assert.ok(names.includes('SpiffeWorkloadAPI'), `${version}: ${names.join(',')}`);
    assert.ok(names.includes('envoy.service.secret.v3.SecretDiscoveryService'), names.join(','));
    assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
  }
});

test('the index is built at the first reflection call: registering reads no proto, and a broken one fails that call with INTERNAL', async (t) => {
  // Registration with a proto file that does not exist succeeds: nothing is parsed at start-up.
  const { log, records } = capturingLogger('agent');
  const socket = await serve(t, ['no/such/file.proto'], log);
  const client = reflectionClient('v1', socket);
  t.after(() => client.close());
  for (let i = 0; i < 3; i++) {
    await assert.rejects(ask(client, [{ list_services: '' }]), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INTERNAL);
      assert.match(err.details, /cannot build the server reflection index/);
      assert.doesNotMatch(err.details, /no[/\\]such/, 'no path for the caller');
      return true;
    });
  }
  // The operator hears why, with the cause, once at error level: the later calls fail the same way.
  const errors = records().filter((r) => r.level === LEVEL.error);
  assert.equal(errors.length, 1, JSON.stringify(records()));
  assert.match(errors[0]!.msg, /cannot build the server reflection index/);
  assert.match(JSON.stringify(errors[0]!['err']), /no[/\\]such[/\\]file\.proto/, 'the cause names the file');
  assert.equal(records().filter((r) => r.level === LEVEL.debug).length, 2);
});

test('a reflection request that is not a ServerReflectionRequest is INVALID_ARGUMENT', async (t) => {
  const socket = await serve(t, ['workload/workload.proto']);
  // A raw client sending bytes that are not protobuf: a field key whose varint never ends.
  const Raw = grpc.makeGenericClientConstructor(
    {
      ServerReflectionInfo: {
        path: '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
        requestStream: true,
        responseStream: true,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    'ServerReflection',
  );
  const client = new Raw(`unix://${socket}`, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const call = (client as unknown as Record<string, () => grpc.ClientDuplexStream<Buffer, Buffer>>)['ServerReflectionInfo']!();
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', resolve);
    call.write(Buffer.from([0xff, 0xff]));
    call.end();
  });
  assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
  assert.match(status.details, /^malformed request: grpc\.reflection\.v1\.ServerReflectionRequest: the tag at byte 0 is a truncated varint$/);
});
