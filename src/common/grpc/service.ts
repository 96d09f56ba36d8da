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

type Serialize = (value: unknown) => Buffer;

/** A copy of `definition` whose `methods` serialize their responses through `wrap(original serializer)`. */
export function withResponseSerializers(definition: ServiceDefinition, methods: readonly string[], wrap: (serialize: Serialize) => Serialize): ServiceDefinition {
  const out: Record<string, unknown> = { ...definition };
  for (const name of methods) {
    const method = definition[name];
    if (method === undefined) throw new Error(`service has no method ${name}`);
    out[name] = { ...method, responseSerialize: wrap(method.responseSerialize) };
  }
  return out as ServiceDefinition;
}
