import type { Server } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoDir } from '../paths.js';
import { PROTO_CONVERSION } from './proto.js';

interface ReflectionIndex {
  services: Record<string, unknown>;
  symbols: Record<string, unknown>;
}

/**
 * gRPC server reflection (v1 and v1alpha) for the services in these proto files, so grpcurl and similar tools can
 * list and call them without local copies of the protos (WL-Endpoint §7 asks for it on the workload socket).
 */
export function addReflection(server: Pick<Server, 'addService'>, protoFiles: readonly string[]): void {
  const definition = protoLoader.loadSync([...protoFiles], { ...PROTO_CONVERSION, includeDirs: [protoDir] });
  const service = new ReflectionService(definition);
  // @grpc/reflection 1.0 names symbols of a file without a package ".Name" (workload.proto has no package, so the
  // service would be listed as ".SpiffeWorkloadAPI", which no client can call). Re-key them as "Name".
  for (const impl of Object.values(service as unknown as Record<string, Partial<ReflectionIndex>>)) {
    for (const index of [impl?.services, impl?.symbols]) {
      if (index === undefined) continue;
      for (const key of Object.keys(index)) {
        if (key.startsWith('.')) {
          index[key.slice(1)] = index[key];
          delete index[key];
        }
      }
    }
  }
  service.addToServer(server);
}
