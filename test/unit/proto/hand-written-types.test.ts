/**
 * meshid's TypeScript shapes of proto messages are written by hand (proto-loader generates no types). Nothing else
 * ties them to proto/: a field renamed or retyped in a .proto, or misspelt in a .ts file, would compile and then read
 * undefined at run time. This test reads the declared types with the TypeScript compiler and checks every property
 * against the loaded .proto definitions, in the shape PROTO_CONVERSION decodes to (keepCase, longs and enums as
 * Number and String, bytes as Buffer, oneof names as virtual string members).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import protobuf from 'protobufjs';
import { protoRoot } from '../../../src/common/grpc/proto.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

const PROTO_FILES = [
  'meshid/v1/admin.proto',
  'meshid/v1/agent.proto',
  'workload/workload.proto',
  'envoy/service/secret/v3/sds.proto',
  'grpc/health/v1/health.proto',
];

/** Declared types whose names do not say which message they are: [file, type, proto message]. */
const DECLARED: Array<[string, string, string]> = [
  ['src/common/entry-message.ts', 'EntryMessage', 'meshid.v1.Entry'],
  ['src/common/entry-message.ts', 'SelectorMessage', 'meshid.v1.Selector'],
  ['src/server/api/proto-types.ts', 'ProtoBundle', 'meshid.v1.Bundle'],
  ['src/server/api/proto-types.ts', 'ProtoJwtKey', 'meshid.v1.JwtKey'],
  ['src/server/api/proto-types.ts', 'ProtoAgent', 'meshid.v1.Agent'],
  ['src/agent/client/messages.ts', 'BundleMessage', 'meshid.v1.Bundle'],
  ['src/agent/client/messages.ts', 'AttestResponseMessage', 'meshid.agent.v1.AttestResponse'],
  ['src/agent/client/messages.ts', 'SyncRequestMessage', 'meshid.agent.v1.SyncRequest'],
  ['src/agent/client/messages.ts', 'SyncUpdateMessage', 'meshid.agent.v1.SyncUpdate'],
  ['src/agent/client/messages.ts', 'SignX509SvidsResponseMessage', 'meshid.agent.v1.SignX509SvidsResponse'],
  ['src/agent/client/messages.ts', 'SignJwtSvidResponseMessage', 'meshid.agent.v1.SignJwtSvidResponse'],
  ['src/agent/workload/messages.ts', 'X509Svid', 'X509SVID'],
  ['src/agent/workload/messages.ts', 'X509SvidResponse', 'X509SVIDResponse'],
  ['src/agent/workload/messages.ts', 'X509BundlesResponse', 'X509BundlesResponse'],
  ['src/agent/workload/messages.ts', 'JwtSvidRequest', 'JWTSVIDRequest'],
  ['src/agent/workload/messages.ts', 'JwtSvid', 'JWTSVID'],
  ['src/agent/workload/messages.ts', 'JwtSvidResponse', 'JWTSVIDResponse'],
  ['src/agent/workload/messages.ts', 'JwtBundlesResponse', 'JWTBundlesResponse'],
  ['src/agent/workload/messages.ts', 'ValidateJwtSvidRequest', 'ValidateJWTSVIDRequest'],
  ['src/agent/workload/messages.ts', 'ValidateJwtSvidResponse', 'ValidateJWTSVIDResponse'],
  ['src/server/api/node-sync.ts', 'SyncRequest', 'meshid.agent.v1.SyncRequest'],
  ['src/server/api/sync-update-parts.ts', 'SyncUpdate', 'meshid.agent.v1.SyncUpdate'],
  ['src/server/api/federation-service.ts', 'ProtoRelationship', 'meshid.admin.v1.FederationRelationship'],
  ['src/agent/sds/messages.ts', 'EnvoyNode', 'envoy.config.core.v3.Node'],
  ['src/agent/sds/messages.ts', 'RpcStatus', 'google.rpc.Status'],
  ['src/agent/sds/messages.ts', 'DiscoveryRequest', 'envoy.service.discovery.v3.DiscoveryRequest'],
  ['src/agent/sds/messages.ts', 'DiscoveryResponse', 'envoy.service.discovery.v3.DiscoveryResponse'],
  ['src/agent/sds/messages.ts', 'DeltaDiscoveryRequest', 'envoy.service.discovery.v3.DeltaDiscoveryRequest'],
  ['src/agent/sds/messages.ts', 'DeltaResource', 'envoy.service.discovery.v3.Resource'],
  ['src/agent/sds/messages.ts', 'DeltaDiscoveryResponse', 'envoy.service.discovery.v3.DeltaDiscoveryResponse'],
];

/** The CLI's table of every admin call: AdminMethods[service][method] = [request, response]. */
const ADMIN_METHODS: [string, string] = ['src/server/cli/admin-types.ts', 'AdminMethods'];
const SERVICE_PACKAGE: Record<string, string> = { Health: 'grpc.health.v1' };

/** Messages the code builds or reads with protobufjs' own helpers, in a shape of their own (e.g. toStruct). */
const OPAQUE = new Set(['google.protobuf.Struct', 'google.protobuf.Any', 'google.protobuf.Value']);

const NUMERIC = new Set(['double', 'float', 'int32', 'uint32', 'sint32', 'fixed32', 'sfixed32', 'int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

/** Counts the properties compared, so that a walk that finds nothing to compare cannot pass. */
let fieldsChecked = 0;

let compiled: { checker: ts.TypeChecker; program: ts.Program } | undefined;
function compiler(): { checker: ts.TypeChecker; program: ts.Program } {
  if (compiled === undefined) {
    const files = [...new Set([...DECLARED.map(([file]) => file), ADMIN_METHODS[0]])].map((f) => path.join(repo, f));
    const program = ts.createProgram(files, {
      strict: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
      skipLibCheck: true,
      noEmit: true,
    });
    compiled = { checker: program.getTypeChecker(), program };
  }
  return compiled;
}

/** A type or interface declared at the top of a file, exported or not (some services keep their shapes private). */
function declaredType(file: string, name: string): ts.Type {
  const { checker, program } = compiler();
  const source = program.getSourceFile(path.join(repo, file));
  assert.ok(source, `${file} is not in the program`);
  for (const statement of source.statements) {
    if ((ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement)) && statement.name.text === name) {
      return checker.getTypeAtLocation(statement.name);
    }
  }
  assert.fail(`${file} declares no ${name}`);
}

function propertyType(symbol: ts.Symbol): ts.Type {
  const { checker } = compiler();
  const declaration = symbol.valueDeclaration ?? symbol.declarations?.[0];
  const type = declaration ? checker.getTypeOfSymbolAtLocation(symbol, declaration) : checker.getTypeOfSymbol(symbol);
  return checker.getNonNullableType(type);
}

function typeText(type: ts.Type): string {
  return compiler().checker.typeToString(type);
}

function isStringLike(type: ts.Type): boolean {
  if (type.isUnion()) return type.types.every(isStringLike);
  return (type.flags & (ts.TypeFlags.String | ts.TypeFlags.StringLiteral)) !== 0;
}

function isNumberLike(type: ts.Type): boolean {
  if (type.isUnion()) return type.types.every(isNumberLike);
  return (type.flags & (ts.TypeFlags.Number | ts.TypeFlags.NumberLiteral)) !== 0;
}

function isBooleanLike(type: ts.Type): boolean {
  return (type.flags & (ts.TypeFlags.Boolean | ts.TypeFlags.BooleanLiteral)) !== 0 || (type.isUnion() && type.types.every(isBooleanLike));
}

function isBytes(type: ts.Type): boolean {
  const name = type.getSymbol()?.name ?? type.aliasSymbol?.name;
  return name === 'Buffer' || name === 'Uint8Array';
}

/** Every mismatch between a declared type and a message, as "Type.path: problem" lines. */
function mismatches(type: ts.Type, message: protobuf.Type, where: string, seen = new Set<string>()): string[] {
  const key = `${typeText(type)}@${messageName(message)}`;
  if (seen.has(key)) return [];
  seen.add(key);
  const { checker } = compiler();
  const problems: string[] = [];
  for (const property of checker.getPropertiesOfType(type)) {
    fieldsChecked++;
    const at = `${where}.${property.name}`;
    const field = message.fields[property.name];
    const declared = propertyType(property);
    if (field === undefined) {
      if (message.oneofs?.[property.name] !== undefined) {
        if (!isStringLike(declared)) problems.push(`${at}: oneof ${property.name} decodes as the set member's name (string), declared ${typeText(declared)}`);
      } else {
        problems.push(`${at}: ${messageName(message)} has no field "${property.name}"`);
      }
      continue;
    }
    problems.push(...fieldMismatches(declared, field, at, seen));
  }
  return problems;
}

function fieldMismatches(declared: ts.Type, field: protobuf.Field, at: string, seen: Set<string>): string[] {
  const { checker } = compiler();
  if (field instanceof protobuf.MapField) {
    const value = checker.getIndexInfosOfType(declared).find((info) => isStringLike(info.keyType))?.type;
    if (value === undefined) return [`${at}: map<${field.keyType}, ${field.type}> should be a string-keyed record, declared ${typeText(declared)}`];
    return valueMismatches(checker.getNonNullableType(value), field, at, seen);
  }
  if (field.repeated) {
    if (!checker.isArrayType(declared)) return [`${at}: repeated ${field.type} should be an array, declared ${typeText(declared)}`];
    const element = checker.getTypeArguments(declared as ts.TypeReference)[0];
    assert.ok(element);
    return valueMismatches(checker.getNonNullableType(element), field, `${at}[]`, seen);
  }
  return valueMismatches(declared, field, at, seen);
}

function valueMismatches(declared: ts.Type, field: protobuf.Field, at: string, seen: Set<string>): string[] {
  const resolved = field.resolvedType;
  const wrong = (expected: string): string[] => [`${at}: ${field.type} decodes as ${expected}, declared ${typeText(declared)}`];
  if (resolved instanceof protobuf.Enum) return isStringLike(declared) ? [] : wrong('a string');
  if (resolved instanceof protobuf.Type) {
    if (OPAQUE.has(messageName(resolved))) return [];
    if (isStringLike(declared) || isNumberLike(declared) || isBooleanLike(declared) || isBytes(declared)) return wrong('an object');
    return mismatches(declared, resolved, at, seen);
  }
  if (field.type === 'string') return isStringLike(declared) ? [] : wrong('a string');
  if (field.type === 'bool') return isBooleanLike(declared) ? [] : wrong('a boolean');
  if (field.type === 'bytes') return isBytes(declared) ? [] : wrong('a Buffer');
  if (NUMERIC.has(field.type)) return isNumberLike(declared) ? [] : wrong('a number');
  return [`${at}: unknown proto type ${field.type}`];
}

/** protobufjs' fullName carries a leading dot. */
function messageName(message: protobuf.ReflectionObject): string {
  return message.fullName.replace(/^\./, '');
}

function lookup(name: string): protobuf.Type {
  return protoRoot(PROTO_FILES).lookupType(name);
}

test('every hand-written message type matches its .proto message, field by field', () => {
  fieldsChecked = 0;
  const problems = DECLARED.flatMap(([file, name, message]) => mismatches(declaredType(file, name), lookup(message), name));
  assert.deepEqual(problems, []);
  assert.ok(fieldsChecked >= 100, `only ${fieldsChecked} fields were compared`);
});

test("the admin CLI's request and response types match every admin method's messages in proto/", () => {
  const { checker } = compiler();
  const methods = declaredType(...ADMIN_METHODS);
  const problems: string[] = [];
  let checked = 0;
  for (const service of checker.getPropertiesOfType(methods)) {
    const definition = protoRoot(PROTO_FILES).lookupService(`${SERVICE_PACKAGE[service.name] ?? 'meshid.admin.v1'}.${service.name}`);
    for (const method of checker.getPropertiesOfType(propertyType(service))) {
      const rpc = definition.methods[method.name];
      if (rpc === undefined) {
        problems.push(`${service.name}.${method.name}: ${messageName(definition)} has no such method`);
        continue;
      }
      rpc.resolve();
      const pair = propertyType(method);
      const [request, response] = checker.getTypeArguments(pair as ts.TypeReference);
      assert.ok(request && response, `${service.name}.${method.name} is not a [request, response] pair`);
      problems.push(...mismatches(request, rpc.resolvedRequestType!, `${service.name}.${method.name} request`));
      problems.push(...mismatches(response, rpc.resolvedResponseType!, `${service.name}.${method.name} response`));
      checked++;
    }
  }
  assert.deepEqual(problems, []);
  // The table is read through the compiler: an empty walk would pass vacuously.
  assert.ok(checked >= 30, `only ${checked} admin methods were checked`);
});

test('the check catches a misspelt field, a wrong scalar type and a missing array (a declared type made up here)', () => {
  const file = path.join(repo, 'test/unit/proto/hand-written-types.fixture.ts');
  const host = ts.createCompilerHost({ strict: true });
  const source = [
    'export interface Wrong {',
    '  spiffe_idd?: string;',
    '  x509_svid_ttl?: string;',
    '  dns_names?: string;',
    '  selectors?: Array<{ type?: string; valu?: string }>;',
    '}',
  ].join('\n');
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === file ? source : readFile(name));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, onError) =>
    name === file ? ts.createSourceFile(name, source, ts.ScriptTarget.ES2022) : getSourceFile(name, version, onError);
  const program = ts.createProgram([file], { strict: true, noEmit: true, types: [] }, host);
  compiled = { checker: program.getTypeChecker(), program };
  try {
    const problems = mismatches(declaredType('test/unit/proto/hand-written-types.fixture.ts', 'Wrong'), lookup('meshid.v1.Entry'), 'Wrong');
    assert.deepEqual(problems.sort(), [
      'Wrong.dns_names: repeated string should be an array, declared string',
      'Wrong.selectors[].valu: meshid.v1.Selector has no field "valu"',
      'Wrong.spiffe_idd: meshid.v1.Entry has no field "spiffe_idd"',
      'Wrong.x509_svid_ttl: int32 decodes as a number, declared string',
    ]);
  } finally {
    compiled = undefined;
  }
});
