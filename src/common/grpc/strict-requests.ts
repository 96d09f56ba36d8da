import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { invalidArgument, type MeshidError } from '../errors.js';
import { toServiceError } from '../grpc-status.js';
import { wireProblem } from './wire-check.js';

/**
 * Strict request decoding for every meshid gRPC service, in two halves that only work together:
 *
 * - `strictRequestDecoding` gives every method of a loaded package definition a request deserializer that checks the
 *   bytes (wire-check.ts) before protobufjs decodes them, and returns a MalformedRequest instead of throwing;
 * - `malformedRequestInterceptor`, installed on every server (BASE_SERVER_OPTIONS), ends a call that received a
 *   MalformedRequest with INVALID_ARGUMENT and the problem, before any handler sees it.
 *
 * The detour exists because grpc-js answers a deserializer that throws with INTERNAL "Error deserializing request"
 * (the reason only with GRPC_NODE_DEBUG_SEND_ERROR_DETAILS set), which tells a client the server broke rather than
 * that its request was wrong, and tells it nothing of what was wrong.
 */

/** What the request deserializer returns for bytes that are no valid encoding of the request type. */
export class MalformedRequest {
  constructor(readonly error: MeshidError) {}
}

/**
 * Replaces the request deserializer of every method in `definition` (proto-loader's) with one that refuses malformed
 * bytes; `root` gives the same files as a protobufjs Root. Decoding itself stays proto-loader's. The root is asked for
 * at a method's first request, not here: clients load the same definitions and never decode a request.
 */
export function strictRequestDecoding(definition: PackageDefinition, root: () => protobuf.Root): void {
  for (const [serviceName, service] of Object.entries(definition)) {
    // Message and enum definitions have a `format`; services are maps of method definitions.
    if ('format' in service) continue;
    for (const [methodName, method] of Object.entries(service)) {
      const requestType = (): protobuf.Type => {
        const found = root().lookup(serviceName);
        const type = found instanceof protobuf.Service ? found.methods[methodName]?.resolve() : undefined;
        if (!(type instanceof protobuf.Method) || !type.resolvedRequestType) {
          throw new Error(`method ${serviceName}.${methodName} has no request type in the protobuf root`);
        }
        return type.resolvedRequestType;
      };
      // A MalformedRequest is no request object; the interceptor keeps it from every handler.
      method.requestDeserialize = strictDeserializer(requestType, method.requestDeserialize) as (bytes: Buffer) => object;
    }
  }
}

function strictDeserializer(requestType: () => protobuf.Type, deserialize: (bytes: Buffer) => unknown): (bytes: Buffer) => unknown {
  let type: protobuf.Type | undefined;
  return (bytes: Buffer): unknown => {
    type ??= requestType();
    const problem = wireProblem(type, bytes);
    if (problem !== undefined) return new MalformedRequest(invalidArgument(`malformed request: ${problem}`));
    try {
      return deserialize(bytes);
    } catch (error) {
      // Bytes wire-check accepted should always decode; if protobufjs still refuses them, it is about the request.
      return new MalformedRequest(invalidArgument(`malformed request: not a valid ${type.fullName.replace(/^\./, '')}`, error));
    }
  };
}

/**
 * Ends a call whose request message is a MalformedRequest with INVALID_ARGUMENT; the message never reaches the
 * handler (a stream handler hears the call end as a cancellation, as with any status sent for it).
 */
export const malformedRequestInterceptor: ServerInterceptor = (_methodDescriptor, call) =>
  new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMessage: (message, nextMessage) => {
          if (message instanceof MalformedRequest) {
            const { code, details, metadata } = toServiceError(message.error);
            call.sendStatus({ code, details, metadata: metadata ?? null });
            return;
          }
          nextMessage(message);
        },
      }),
  });
