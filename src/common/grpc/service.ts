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

export type Serialize = (value: unknown) => Buffer;

/**
 * `serialize`, encoding each object once: later calls with the same object return the same bytes. For responses
 * handed unchanged to many streams; grpc-js copies the bytes into its own frame, so sharing them is safe. Entries
 * go with the object. Non-objects are serialized every time.
 */
export function serializeEachObjectOnce(serialize: Serialize): Serialize {
  const encoded = new WeakMap<object, Buffer>();
  return (value: unknown): Buffer => {
    if (typeof value !== 'object' || value === null) return serialize(value);
    let bytes = encoded.get(value);
    if (bytes === undefined) encoded.set(value, (bytes = serialize(value)));
    return bytes;
  };
}

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
