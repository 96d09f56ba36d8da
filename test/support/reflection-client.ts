/** A gRPC server reflection client (v1 or v1alpha) for tests, from @grpc/reflection's copy of the published protos. */
import path from 'node:path';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const require = createRequire(import.meta.url);

export type Reply = {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_message: string };
};

/** A reflection client of either version, from @grpc/reflection's copy of the published protos. */
export function reflectionClient(version: 'v1' | 'v1alpha', socket: string): grpc.Client {
  const file = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), `build/proto/grpc/reflection/${version}/reflection.proto`);
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(file, { keepCase: true })) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  return new pkg.grpc.reflection[version]!.ServerReflection(`unix://${socket}`, grpc.credentials.createInsecure());
}

/** Writes `requests` on one ServerReflectionInfo stream and collects a reply per request. */
export async function ask(client: grpc.Client, requests: unknown[]): Promise<Reply[]> {
  const call = (client as unknown as Record<string, () => grpc.ClientDuplexStream<unknown, Reply>>)['ServerReflectionInfo']!();
  const replies: Reply[] = [];
  await new Promise<void>((resolve, reject) => {
    call.on('data', (msg: Reply) => {
      replies.push(msg);
      if (replies.length === requests.length) call.end();
    });
    call.on('end', resolve);
    call.on('error', reject);
    for (const r of requests) call.write(r);
  });
  return replies;
}

/** The service names the server at `socket` lists through reflection v1. */
export async function listedServices(socket: string): Promise<string[]> {
  const client = reflectionClient('v1', socket);
  try {
    const [reply] = await ask(client, [{ list_services: '' }]);
    return (reply?.list_services_response?.service ?? []).map((s) => s.name);
  } finally {
    client.close();
  }
}
