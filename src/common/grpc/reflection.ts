import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Server, ServerDuplexStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import protobuf from 'protobufjs';
import { internal, invalidArgument, isMeshidError } from '../errors.js';
import { toServiceError } from '../grpc-status.js';
import type { Logger } from '../log.js';
import { protoDir } from '../paths.js';
import { PROTO_CONVERSION, protoRoot } from './proto.js';
import { wireProblem } from './wire-check.js';

interface ReflectionIndex {
  services: Record<string, unknown>;
  symbols: Record<string, unknown>;
}

/** The one method of grpc.reflection.v1 and v1alpha ServerReflection (a bidi stream). */
const REFLECTION_METHODS = ['/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'];

/** What @grpc/reflection registers for one method: its handler and the message codecs of its proto. */
interface RegisteredMethod {
  readonly handler: (stream: ReflectionStream) => void;
  /** The request type, from @grpc/reflection's own copy of the protos, for the strict check (wire-check.ts). */
  readonly requestType: protobuf.Type;
  readonly deserialize: (bytes: Buffer) => unknown;
  readonly serialize: (message: unknown) => Buffer;
}

/** The part of a server stream @grpc/reflection's handlers use: 'data' and 'end' events, write() and end(). */
type ReflectionStream = EventEmitter & { write(message: unknown): boolean; end(): void };

const raw = (bytes: Buffer): Buffer => bytes;

/**
 * gRPC server reflection (v1 and v1alpha) for the services in these proto files, so grpcurl and similar tools can
 * list and call them without local copies of the protos (WL-Endpoint §7 asks for it on the workload socket).
 *
 * The index is built on the first reflection call, not here: building it parses the protos again and walks every
 * descriptor (~45 ms), which at agent start came before the socket served its first workload (P6). Until then the
 * two methods are registered with pass-through codecs, and each call is handed to @grpc/reflection's own handler
 * through an adapter that decodes and encodes with the codecs that handler registered.
 */
/**
 * `log` hears why the index cannot be built (the caller gets only INTERNAL): at error level the first time, since
 * the protos shipped with the binary are broken and only the operator can act on it, then at debug, since every
 * later reflection call fails the same way and a client retrying in a loop would otherwise write a line each time.
 */
export function addReflection(server: Pick<Server, 'addService'>, protoFiles: readonly string[], log?: Logger): void {
  let methods: Map<string, RegisteredMethod> | undefined;
  let failureLogged = false;
  for (const methodPath of REFLECTION_METHODS) {
    const definition: ServiceDefinition = {
      ServerReflectionInfo: {
        path: methodPath,
        requestStream: true,
        responseStream: true,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    };
    server.addService(definition, {
      ServerReflectionInfo: (call: ServerDuplexStream<Buffer, Buffer>) => {
        try {
          methods ??= reflectionMethods(protoFiles);
        } catch (error) {
          const fields = { rpc: methodPath, protoFiles, err: error };
          if (failureLogged) log?.debug(fields, 'cannot build the server reflection index');
          else log?.error(fields, 'cannot build the server reflection index: reflection calls fail with INTERNAL (the proto files shipped with meshid are missing or broken; reinstall it)');
          failureLogged = true;
          call.emit('error', toServiceError(internal('cannot build the server reflection index; the log has the cause', error)));
          return;
        }
        const method = methods.get(methodPath)!;
        method.handler(adapt(call, method));
      },
    });
  }
}

/** Builds @grpc/reflection's service and collects what it registers, by method path. */
function reflectionMethods(protoFiles: readonly string[]): Map<string, RegisteredMethod> {
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
  const root = reflectionProtoRoot();
  const methods = new Map<string, RegisteredMethod>();
  service.addToServer({
    addService(definition: ServiceDefinition, implementation: UntypedServiceImplementation): void {
      for (const [name, method] of Object.entries(definition)) {
        const requestType = root.lookupType(method.path.split('/')[1]!.replace(/ServerReflection$/, 'ServerReflectionRequest'));
        methods.set(method.path, {
          handler: implementation[name] as unknown as RegisteredMethod['handler'],
          requestType,
          deserialize: method.requestDeserialize,
          serialize: method.responseSerialize,
        });
      }
    },
  } as Pick<Server, 'addService'> as Server);
  return methods;
}

/** @grpc/reflection's own v1 and v1alpha protos (the ones its handlers decode with) as a protobufjs Root. */
function reflectionProtoRoot(): protobuf.Root {
  const packageDir = path.dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json'));
  return protoRoot(['v1', 'v1alpha'].map((v) => path.join(packageDir, 'build/proto/grpc/reflection', v, 'reflection.proto')));
}

/** The raw call as the stream @grpc/reflection's handler expects: decoded requests in, encoded responses out. */
function adapt(call: ServerDuplexStream<Buffer, Buffer>, method: RegisteredMethod): ReflectionStream {
  const stream = Object.assign(new EventEmitter(), {
    write: (message: unknown): boolean => call.write(method.serialize(message)),
    end: (): void => {
      call.end();
    },
  });
  let refused = false;
  call.on('data', (bytes: Buffer) => {
    if (refused) return;
    let request: unknown;
    try {
      const problem = wireProblem(method.requestType, bytes);
      if (problem !== undefined) throw invalidArgument(`malformed request: ${problem}`);
      request = method.deserialize(bytes);
    } catch (error) {
      // The handler hears nothing more, so it cannot end the call with OK after this status.
      refused = true;
      call.emit('error', toServiceError(isMeshidError(error) ? error : invalidArgument('malformed server reflection request', error)));
      return;
    }
    stream.emit('data', request);
  });
  call.on('end', () => {
    if (!refused) stream.emit('end');
  });
  return stream;
}
