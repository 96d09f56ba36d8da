import type { GrpcObject, ServiceClientConstructor, ServiceDefinition } from '@grpc/grpc-js';
import { internal } from '../errors.js';

/** Looks up a service constructor by its full name ("meshid.admin.v1.Entries") in a loaded GrpcObject. */
export function serviceClient(proto: GrpcObject, fullName: string): ServiceClientConstructor {
  let node: unknown = proto;
  for (const part of fullName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function' || !('service' in node)) throw internal(`service ${fullName} is not in the loaded protos`);
  return node as ServiceClientConstructor;
}

/** The service definition to pass to Server.addService. */
export function serviceOf(proto: GrpcObject, fullName: string): ServiceDefinition {
  return serviceClient(proto, fullName).service;
}
