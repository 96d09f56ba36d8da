import type * as grpc from '@grpc/grpc-js';

/** Pass-through (de)serializer: the test handles the bytes itself. */
export const raw = (b: Buffer): Buffer => b;

/** A method whose requests and responses are the bytes as sent, for stand-in services and byte-level clients. */
export function rawMethod(path: string, kind: { requestStream?: boolean; responseStream?: boolean } = {}): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: kind.requestStream ?? false,
    responseStream: kind.responseStream ?? false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  };
}
