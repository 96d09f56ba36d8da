import fs from 'node:fs';
import path from 'node:path';
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { invalidArgument } from '../errors.js';
import { protoDir } from '../paths.js';
import { strictRequestDecoding } from './strict-requests.js';

/**
 * How protobuf messages look in JavaScript everywhere in meshid — grpc-js handlers and clients (through
 * proto-loader) and packAny/unpackAny — so one object shape works on both paths:
 * - keepCase: field names exactly as in the .proto files (`spiffe_id`, `type_url`, `inline_bytes`);
 * - longs: Number (int64 sequence numbers and Unix times stay far below 2^53);
 * - enums: String (`'URI'`, not 3);
 * - defaults: false: proto3 defaults are absent on decoded messages, so handlers read `msg.resource_names ?? []`;
 * - oneofs: true: a virtual property names the set member (`specifier: 'inline_bytes'`);
 * - bytes: left unset on purpose. protobufjs only recognises String (base64) and Array; unset, decoded `bytes` fields
 *   are Node Buffers, which is what the Workload API (DER) and SDS (PEM bytes) code wants. Encoding accepts Buffer,
 *   Uint8Array or a base64 string.
 */
export const PROTO_CONVERSION = Object.freeze({
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
});

const grpcObjects = new Map<string, GrpcObject>();
const roots = new Map<string, protobuf.Root>();

function cacheKey(relativePaths: string | string[]): string {
  return JSON.stringify([relativePaths].flat().slice().sort());
}

/**
 * Loads .proto files (paths relative to proto/, e.g. `workload/workload.proto`) as a grpc-js GrpcObject, with the
 * options in PROTO_CONVERSION. Imports resolve against proto/; `google/protobuf/*` well-known types come bundled with
 * protobufjs. Cached per set of paths, so every caller shares one set of service definitions.
 *
 * Request deserializers are strict (strict-requests.ts): a server built with BASE_SERVER_OPTIONS answers malformed
 * request bytes with INVALID_ARGUMENT naming the problem.
 */
export function loadProto(relativePath: string | string[]): GrpcObject {
  const key = cacheKey(relativePath);
  let loaded = grpcObjects.get(key);
  if (loaded === undefined) {
    const definition = protoLoader.loadSync([relativePath].flat(), { ...PROTO_CONVERSION, includeDirs: [protoDir] });
    strictRequestDecoding(definition, () => protoRoot(relativePath));
    loaded = loadPackageDefinition(definition);
    grpcObjects.set(key, loaded);
  }
  return loaded;
}

/**
 * The same .proto files as a protobufjs Root (keepCase), for encoding and decoding messages outside grpc-js: Any
 * payloads, wire-format tests. Cached per set of paths.
 */
export function protoRoot(relativePaths: string | string[]): protobuf.Root {
  const key = cacheKey(relativePaths);
  let root = roots.get(key);
  if (root === undefined) {
    root = new protobuf.Root();
    // Same resolution as proto-loader's includeDirs; google/protobuf/* never reaches this (bundled in protobufjs).
    root.resolvePath = (_origin: string, target: string): string => {
      if (path.isAbsolute(target)) return target;
      const candidate = path.join(protoDir, target);
      return fs.existsSync(candidate) ? candidate : target;
    };
    root.loadSync([relativePaths].flat(), { keepCase: true });
    root.resolveAll();
    roots.set(key, root);
  }
  return root;
}

/** The files whose messages travel inside google.protobuf.Any in meshid: SDS secrets and the SPIFFE validator config. */
export const ANY_PAYLOAD_PROTOS: readonly string[] = Object.freeze([
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto',
  'envoy/service/discovery/v3/discovery.proto',
]);

const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** google.protobuf.Any in the keepCase object shape grpc-js handlers send and receive. */
export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/** `type.googleapis.com/<full message name>`, the form Envoy expects (SPEC-NOTES §1). */
export function typeUrl(typeName: string): string {
  return TYPE_URL_PREFIX + typeName.replace(/^\./, '');
}

function lookupMessage(root: protobuf.Root, typeName: string): protobuf.Type {
  const found = root.lookup(typeName.replace(/^\./, ''));
  if (!(found instanceof protobuf.Type)) throw invalidArgument(`unknown protobuf message type "${typeName}"`);
  return found;
}

/**
 * Rejects properties that are not fields (or oneof names) of the message type, at every nesting level: protobufjs'
 * fromObject drops them silently, which would turn a typo in a secret builder into a secret Envoy NACKs.
 */
function assertKnownFields(type: protobuf.Type, value: unknown, where: string): void {
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value) || value instanceof Uint8Array) return;
  for (const [key, member] of Object.entries(value)) {
    if (member === undefined) continue;
    const field = type.fields[key];
    if (field === undefined) {
      if (type.oneofs?.[key] !== undefined) continue;
      throw invalidArgument(`${where}: "${key}" is not a field of ${type.fullName.slice(1)}`);
    }
    field.resolve();
    const fieldType = field.resolvedType;
    if (!(fieldType instanceof protobuf.Type)) continue;
    // Any is opaque here: its value is already encoded bytes.
    if (fieldType.fullName === '.google.protobuf.Any') continue;
    if (field instanceof protobuf.MapField) {
      for (const [k, v] of Object.entries(member as object)) assertKnownFields(fieldType, v, `${where}.${key}[${k}]`);
    } else if (field.repeated && Array.isArray(member)) {
      member.forEach((v, i) => assertKnownFields(fieldType, v, `${where}.${key}[${i}]`));
    } else {
      assertKnownFields(fieldType, member, `${where}.${key}`);
    }
  }
  // fromObject would encode both members of a oneof and the decoder would keep whichever comes last.
  for (const oneof of type.oneofsArray) {
    const set = oneof.oneof.filter((name) => (value as Record<string, unknown>)[name] != null);
    if (set.length > 1) throw invalidArgument(`${where}: oneof ${oneof.name} has more than one member set (${set.join(', ')})`);
  }
}

/**
 * Encodes `message` (keepCase object) as `typeName` and wraps it in google.protobuf.Any, e.g. an SDS Secret as
 * `{ type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', value }`. Unknown properties
 * are an error. The type is looked up in the files of ANY_PAYLOAD_PROTOS.
 */
export function packAny(typeName: string, message: object): AnyMessage {
  const type = lookupMessage(protoRoot([...ANY_PAYLOAD_PROTOS]), typeName);
  assertKnownFields(type, message, typeName);
  let bytes: Uint8Array;
  try {
    // Not type.verify(): it rejects enum names, which fromObject (like proto-loader) accepts.
    bytes = type.encode(type.fromObject(message)).finish();
  } catch (err) {
    throw invalidArgument(`cannot encode ${typeName}: ${(err as Error).message}`, err);
  }
  return { type_url: typeUrl(type.fullName), value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/**
 * Decodes an Any into a keepCase object (PROTO_CONVERSION). With `expectedTypeName`, a different type URL is an
 * error, so a caller never misreads one message type as another. The type is looked up in ANY_PAYLOAD_PROTOS.
 */
export function unpackAny(any: { type_url?: string; value?: Uint8Array }, expectedTypeName?: string): Record<string, unknown> {
  const url = any.type_url ?? '';
  const slash = url.lastIndexOf('/');
  if (slash === -1) throw invalidArgument(`Any type URL "${url}" has no "/"`);
  const typeName = url.slice(slash + 1);
  if (expectedTypeName !== undefined && typeName !== expectedTypeName.replace(/^\./, '')) {
    throw invalidArgument(`Any holds ${typeName}, expected ${expectedTypeName}`);
  }
  const type = lookupMessage(protoRoot([...ANY_PAYLOAD_PROTOS]), typeName);
  const value = any.value ?? Buffer.alloc(0);
  // A Buffer input makes protobufjs return bytes fields as Buffers too.
  const buffer = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  let decoded: protobuf.Message;
  try {
    decoded = type.decode(buffer);
  } catch (err) {
    throw invalidArgument(`Any value is not a valid ${typeName}`, err);
  }
  return type.toObject(decoded, PROTO_CONVERSION);
}

/**
 * google.protobuf.Value as grpc-js handlers see it. protobufjs bundles the well-known types with camelCase member
 * names, and `keepCase` only applies to parsed .proto text, so — unlike every other message in meshid — Value
 * members are `nullValue`, `numberValue`, `stringValue`, `boolValue`, `structValue`, `listValue`. Use toStruct /
 * fromStruct rather than building or reading these by hand.
 */
export interface ProtoValue {
  nullValue?: 'NULL_VALUE' | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
  /** The set member's name (oneofs: true). */
  kind?: string;
}

/** google.protobuf.Struct as grpc-js handlers see it (map `fields`). */
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

function toValue(value: unknown): ProtoValue {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'bigint':
      return { numberValue: Number(value) };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
      return { structValue: toStruct(value as Record<string, unknown>) };
    default:
      throw invalidArgument(`a ${typeof value} cannot be put in a google.protobuf.Struct`);
  }
}

/**
 * Sets `key` as an own, enumerable property. Plain assignment of the key `__proto__` would replace the object's
 * prototype instead, so a JWT claim or Struct field of that name (JSON allows any member name) would vanish.
 */
function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * A JSON-like object as google.protobuf.Struct, e.g. ValidateJWTSVIDResponse.claims (SPEC-NOTES §8: numbers become
 * doubles, arrays lists). Properties that are undefined are left out, as JSON.stringify would. Every member name is
 * carried as given, `__proto__` included.
 */
export function toStruct(object: Record<string, unknown>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [key, value] of Object.entries(object)) {
    if (value !== undefined) setOwn(fields, key, toValue(value));
  }
  return { fields };
}

function fromValue(value: ProtoValue | undefined): unknown {
  if (value === undefined || value === null) return null;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.structValue !== undefined) return fromStruct(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(fromValue);
  return null;
}

/**
 * google.protobuf.Struct (as decoded by grpc-js) as a plain object, e.g. Envoy's Node.metadata (SPEC-NOTES §9) or a
 * validated JWT-SVID's claims; a `__proto__` field comes back as an own property, like the others.
 */
export function fromStruct(struct: ProtoStruct | undefined | null): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) setOwn(out, key, fromValue(value));
  return out;
}
