import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { addReflection } from '../../../src/common/grpc/reflection.js';
import { tempDir } from '../../support/server-kit.js';

const require = createRequire(import.meta.url);

test('reflection lists the Workload API and SDS services on a Unix socket', async () => {
  const { dir, cleanup } = tempDir('meshid-reflection-');
  const server = new grpc.Server();
  try {
    addReflection(server, ['workload/workload.proto', 'envoy/service/secret/v3/sds.proto', 'grpc/health/v1/health.proto']);
    const socket = path.join(dir, 'r.sock');
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    const reflectionProto = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(reflectionProto, { keepCase: true })) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const client = new pkg.grpc.reflection.v1.ServerReflection(`unix://${socket}`, grpc.credentials.createInsecure());
    type Reply = { list_services_response?: { service: Array<{ name: string }> }; file_descriptor_response?: { file_descriptor_proto: Buffer[] }; error_response?: { error_message: string } };
    const call = client['ServerReflectionInfo']() as grpc.ClientDuplexStream<unknown, Reply>;
    const replies: Reply[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on('data', (msg: Reply) => {
        replies.push(msg);
        if (replies.length === 2) call.end();
      });
      call.on('end', resolve);
      call.on('error', reject);
      call.write({ list_services: '' });
      call.write({ file_containing_symbol: 'SpiffeWorkloadAPI' });
    });
    client.close();
    const names = (replies[0]!.list_services_response?.service ?? []).map((s) => s.name);
    assert.equal(replies[1]!.error_response, undefined, JSON.stringify(replies[1]));
    assert.ok(Buffer.concat(replies[1]!.file_descriptor_response!.file_descriptor_proto).includes('FetchX509SVID'), 'the descriptor of the package-less service is found by its plain name');
    assert.ok(names.includes('SpiffeWorkloadAPI'), names.join(','));
    assert.ok(names.includes('envoy.service.secret.v3.SecretDiscoveryService'), names.join(','));
    assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
  } finally {
    server.forceShutdown();
    cleanup();
  }
});
