import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { protoRoot } from '../../../src/common/grpc/proto.js';
import { MAX_SDS_RESOURCE_NAMES, MAX_X509_SVIDS_PER_CALL, REPEATED_LIMITS } from '../../../src/common/grpc/repeated-limits.js';
import { MAX_SDS_REQUEST_VALUES, REQUEST_VALUE_LIMITS } from '../../../src/common/grpc/value-limits.js';
import { MAX_NESTING, wireProblem } from '../../../src/common/grpc/wire-check.js';
import { MAX_AUDIENCES } from '../../../src/common/jwt/audience-limits.js';
import { delimited, message, tag, varint, varintField } from '../../support/wire-bytes.js';

const workload = protoRoot('workload/workload.proto');
const sds = protoRoot('envoy/service/secret/v3/sds.proto');
const admin = protoRoot('meshid/v1/admin.proto');
const JWT = workload.lookupType('JWTSVIDRequest');
const DISCOVERY = sds.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
const DELTA = sds.lookupType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
const CREATE = admin.lookupType('meshid.admin.v1.CreateEntriesRequest');
// No request meshid serves has a repeated scalar, which protobuf allows packed or not: a type made for the test.
const PACKED = protobuf.Root.fromJSON({
  nested: { P: { fields: { ids: { rule: 'repeated', type: 'int64', id: 1 }, f: { rule: 'repeated', type: 'fixed32', id: 2 } } } },
}).lookupType('P');

const BAD_UTF8 = [0x61, 0xff, 0x62];
const node = (...parts: number[][]): number[] => delimited(2, parts.flat());
const entry = (...parts: number[][]): number[] => delimited(1, parts.flat());

test('well-formed requests, unknown fields of every wire type and non-minimal varints pass', () => {
  const cases: Array<[protobuf.Type, Buffer]> = [
    [JWT, message(delimited(1, 'aud'), delimited(2, 'spiffe://example.org/a'))],
    [JWT, Buffer.alloc(0)],
    // Unknown fields: varint, 64-bit, length-delimited, a group holding a nested group, 32-bit; field 2^29-1.
    [JWT, message(varintField(15, 7), tag(16, 1), Array(8).fill(0), delimited(17, BAD_UTF8), tag(18, 3), tag(19, 3), varintField(1, 1), tag(19, 4), tag(18, 4), tag(20, 5), [1, 2, 3, 4], delimited(2 ** 29 - 1, 'x'))],
    // Field 2 with a 3-byte tag and a length written in 2 bytes.
    [JWT, message([0x92, 0x80, 0x00], [0x81, 0x00], [0x61])],
    [DISCOVERY, message(delimited(1, 'v1'), node(delimited(1, 'envoy-1'), delimited(3, delimited(1, [...delimited(1, 'key'), ...delimited(2, delimited(3, 'str'))]))), delimited(3, 'default'))],
    [CREATE, message(entry(delimited(2, 'spiffe://example.org/w'), delimited(4, [...delimited(1, 'unix'), ...delimited(2, 'uid:1000')]), varintField(5, 3600), varintField(10, 1)))],
    [PACKED, message(delimited(1, [...varint(1), ...varint(2n ** 63n), ...varint(300)]), varintField(1, 5), delimited(2, Array(8).fill(0)), tag(2, 5), [0, 0, 0, 1])],
  ];
  for (const [type, bytes] of cases) assert.equal(wireProblem(type, bytes), undefined, `${type.name} ${bytes.toString('hex')}`);
});

test('malformed requests are refused with the field and the problem named', () => {
  const cases: Array<[protobuf.Type, Buffer, string]> = [
    [JWT, message(delimited(1, 'aud'), tag(2, 2), varint(50), [...Buffer.from('spiff')]), 'JWTSVIDRequest.spiffe_id (field 2): length 50 runs past the end of the message (5 bytes left)'],
    [JWT, message(tag(2, 2), varint(6), [...Buffer.from('spiff')]), 'JWTSVIDRequest.spiffe_id (field 2): length 6 runs past the end of the message (5 bytes left)'],
    [JWT, message(tag(1, 2), varint(2 ** 32 - 1)), 'JWTSVIDRequest.audience (field 1): length 4294967295 runs past the end of the message (0 bytes left)'],
    [JWT, message(delimited(2, BAD_UTF8)), 'JWTSVIDRequest.spiffe_id (field 2) is not valid UTF-8'],
    // A lone continuation byte 0x80, the lowest non-ASCII byte.
    [JWT, message(delimited(2, [0x61, 0x80, 0x62])), 'JWTSVIDRequest.spiffe_id (field 2) is not valid UTF-8'],
    // Overlong encoding of "/" and a lone surrogate (CESU-8): both invalid UTF-8.
    [JWT, message(delimited(1, [0xc0, 0xaf])), 'JWTSVIDRequest.audience (field 1) is not valid UTF-8'],
    [JWT, message(delimited(1, [0xed, 0xa0, 0x80])), 'JWTSVIDRequest.audience (field 1) is not valid UTF-8'],
    [JWT, message(varintField(2, 5), delimited(1, 'aud')), 'JWTSVIDRequest.spiffe_id (field 2) has wire type varint (0), expected length-delimited (2)'],
    [JWT, message(tag(2, 5), [0, 0, 0, 0]), 'JWTSVIDRequest.spiffe_id (field 2) has wire type 32-bit (5), expected length-delimited (2)'],
    [JWT, message(tag(2, 3), tag(2, 4)), 'JWTSVIDRequest.spiffe_id (field 2) has wire type start-group (3), expected length-delimited (2)'],
    [JWT, message([0x80]), 'JWTSVIDRequest: the tag at byte 0 is a truncated varint'],
    [JWT, message(tag(15, 0), [0xff, 0xff]), 'JWTSVIDRequest: unknown field 15: the value is a truncated varint'],
    [JWT, message(tag(15, 0), Array(10).fill(0xff), [0x01]), 'JWTSVIDRequest: unknown field 15: the value is a varint longer than 10 bytes'],
    [JWT, message(tag(15, 0), Array(9).fill(0xff), [0x02]), 'JWTSVIDRequest: unknown field 15: the value is a varint longer than 10 bytes'],
    [JWT, message(tag(2, 2), [0x80]), 'JWTSVIDRequest.spiffe_id (field 2): the length at byte 1 is a truncated varint'],
    [JWT, message(tag(15, 1), [1, 2, 3]), 'JWTSVIDRequest: unknown field 15: 8-byte value truncated (3 bytes left)'],
    [JWT, message(tag(15, 5), [1, 2, 3]), 'JWTSVIDRequest: unknown field 15: 4-byte value truncated (3 bytes left)'],
    [JWT, message(delimited(0, 'x')), 'JWTSVIDRequest: field number 0 at byte 0 (field numbers start at 1)'],
    // Read as 32 bits (protobufjs), this tag is field 2: the field number would alias spiffe_id.
    [JWT, message(delimited(2 ** 29 + 2, 'evil')), 'JWTSVIDRequest: field number 536870914 at byte 0 is above the maximum, 536870911'],
    [JWT, message(tag(15, 6)), 'JWTSVIDRequest: unknown field 15: invalid wire type 6'],
    [JWT, message(tag(15, 7)), 'JWTSVIDRequest: unknown field 15: invalid wire type 7'],
    [JWT, message(tag(2, 6)), 'JWTSVIDRequest.spiffe_id (field 2): invalid wire type 6'],
    [JWT, message(tag(15, 4)), 'JWTSVIDRequest: end-group of field 15 at byte 0 without a matching start-group'],
    [JWT, message(tag(15, 3), varintField(1, 1)), 'JWTSVIDRequest: group 15 has no end-group before the end of the message'],
    [JWT, message(tag(15, 3), tag(16, 4)), 'JWTSVIDRequest: group 15: end-group of field 16 at byte 1 without a matching start-group'],
    // Nested: the node's user agent, a Struct key and value (protobufjs' well-known types are camelCase), an entry's selector.
    [DISCOVERY, message(node(delimited(6, BAD_UTF8))), 'envoy.service.discovery.v3.DiscoveryRequest.node.user_agent_name (field 6) is not valid UTF-8'],
    [DISCOVERY, message(node(delimited(3, delimited(1, delimited(1, BAD_UTF8))))), 'envoy.service.discovery.v3.DiscoveryRequest.node.metadata.fields.key (field 1) is not valid UTF-8'],
    [DISCOVERY, message(node(delimited(3, delimited(1, [...delimited(1, 'k'), ...delimited(2, delimited(3, BAD_UTF8))])))), 'envoy.service.discovery.v3.DiscoveryRequest.node.metadata.fields.value.stringValue (field 3) is not valid UTF-8'],
    [DISCOVERY, message(node(delimited(1, 'id'), tag(3, 2), varint(40))), 'envoy.service.discovery.v3.DiscoveryRequest.node.metadata (field 3): length 40 runs past the end of the message (0 bytes left)'],
    [DELTA, message(delimited(5, [...delimited(1, BAD_UTF8), ...delimited(2, 'v')])), 'envoy.service.discovery.v3.DeltaDiscoveryRequest.initial_resource_versions.key (field 1) is not valid UTF-8'],
    [CREATE, message(entry(delimited(4, [...delimited(1, 'unix'), ...delimited(2, [...Buffer.from('uid:1000'), 0xff])]))), 'meshid.admin.v1.CreateEntriesRequest.entries.selectors.value (field 2) is not valid UTF-8'],
    [CREATE, message(entry(delimited(5, 'x'))), 'meshid.admin.v1.CreateEntriesRequest.entries.x509_svid_ttl (field 5) has wire type length-delimited (2), expected varint (0)'],
    [PACKED, message(delimited(1, [0x80])), 'P.ids (field 1): the packed element at byte 2 is a truncated varint'],
    [PACKED, message(delimited(2, [0, 0, 0, 0, 0])), 'P.f (field 2): packed length 5 is not a multiple of 4'],
  ];
  for (const [type, bytes, problem] of cases) assert.equal(wireProblem(type, bytes), problem, bytes.toString('hex'));
});

test(`messages nested more than ${MAX_NESTING} deep are refused; ${MAX_NESTING} deep pass`, () => {
  // google.protobuf.Value → list_value (6) → values (1) → Value …: two messages per level.
  const nested = (levels: number): number[] => (levels === 0 ? delimited(3, 'leaf') : delimited(6, delimited(1, nested(levels - 1))));
  const request = (levels: number): Buffer => message(node(delimited(3, delimited(1, [...delimited(1, 'k'), ...delimited(2, nested(levels))]))));
  // DiscoveryRequest > node > metadata > fields entry > Value: depth 4 before the first list.
  assert.equal(wireProblem(DISCOVERY, request((MAX_NESTING - 4) / 2)), undefined);
  assert.match(wireProblem(DISCOVERY, request((MAX_NESTING - 4) / 2 + 1)) ?? '', new RegExp(`is nested more than ${MAX_NESTING} deep$`));
  const groups = (levels: number): number[] => (levels === 0 ? [] : [...tag(15, 3), ...groups(levels - 1), ...tag(15, 4)]);
  assert.equal(wireProblem(JWT, message(groups(MAX_NESTING))), undefined);
  assert.match(wireProblem(JWT, message(groups(MAX_NESTING + 1))) ?? '', /is nested more than 100 deep$/);
});

test('repeated fields with a limit of their own are refused past it while the bytes are walked, before any decoding', () => {
  const agent = protoRoot('meshid/v1/agent.proto');
  const SIGN = agent.lookupType('meshid.agent.v1.SignX509SvidsRequest');
  const JWT_SVID = agent.lookupType('meshid.agent.v1.SignJwtSvidRequest');
  const items = (n: number): Buffer => message(...Array.from({ length: n }, () => delimited(1, [])));
  const audiences = (n: number): Buffer => message(...Array.from({ length: n }, () => delimited(2, 'db')));
  assert.equal(wireProblem(SIGN, items(MAX_X509_SVIDS_PER_CALL)), undefined);
  assert.equal(wireProblem(SIGN, items(MAX_X509_SVIDS_PER_CALL + 1)), 'meshid.agent.v1.SignX509SvidsRequest.items (field 1) holds more than 1000 values, the most one request may carry');
  // Two million empty items (~4 MB): the walk stops at the 1001st.
  assert.match(wireProblem(SIGN, Buffer.alloc(4_000_000).fill(Buffer.from([0x0a, 0x00]))) ?? '', /holds more than 1000 values/);
  assert.equal(wireProblem(JWT_SVID, audiences(MAX_AUDIENCES)), undefined);
  assert.equal(wireProblem(JWT_SVID, audiences(MAX_AUDIENCES + 1)), 'meshid.agent.v1.SignJwtSvidRequest.audience (field 2) holds more than 64 values, the most one request may carry');
  // The limit is per message: Sync's known list, legitimately as large as a request may be, has none.
  const SYNC = agent.lookupType('meshid.agent.v1.SyncRequest');
  assert.equal(wireProblem(SYNC, Buffer.alloc(4_000_000).fill(Buffer.from([0x12, 0x00]))), undefined);
});

test('the Workload API and SDS name lists whose handlers refuse more are counted too, map entries included', () => {
  const strings = (field: number, n: number): number[] => Array.from({ length: n }, (_, i) => delimited(field, `n${i}`)).flat();
  const versions = (n: number): number[] => Array.from({ length: n }, (_, i) => delimited(5, [...delimited(1, `n${i}`), ...delimited(2, 'v')])).flat();
  assert.equal(wireProblem(JWT, message(strings(1, MAX_AUDIENCES))), undefined);
  assert.equal(wireProblem(JWT, message(strings(1, MAX_AUDIENCES + 1))), 'JWTSVIDRequest.audience (field 1) holds more than 64 values, the most one request may carry');
  assert.equal(wireProblem(DISCOVERY, message(strings(3, MAX_SDS_RESOURCE_NAMES))), undefined);
  assert.equal(
    wireProblem(DISCOVERY, message(strings(3, MAX_SDS_RESOURCE_NAMES + 1))),
    'envoy.service.discovery.v3.DiscoveryRequest.resource_names (field 3) holds more than 1000 values, the most one request may carry',
  );
  for (const [field, name] of [[3, 'resource_names_subscribe'], [4, 'resource_names_unsubscribe']] as const) {
    assert.equal(wireProblem(DELTA, message(strings(field, MAX_SDS_RESOURCE_NAMES), strings(7 - field, MAX_SDS_RESOURCE_NAMES))), undefined);
    assert.equal(wireProblem(DELTA, message(strings(field, MAX_SDS_RESOURCE_NAMES + 1))), `envoy.service.discovery.v3.DeltaDiscoveryRequest.${name} (field ${field}) holds more than 1000 values, the most one request may carry`);
  }
  assert.equal(wireProblem(DELTA, message(versions(MAX_SDS_RESOURCE_NAMES))), undefined);
  assert.equal(
    wireProblem(DELTA, message(versions(MAX_SDS_RESOURCE_NAMES + 1))),
    'envoy.service.discovery.v3.DeltaDiscoveryRequest.initial_resource_versions (field 5) holds more than 1000 values, the most one request may carry',
  );
});

test('every limited field names a repeated field of a request type the servers register, spelled as they spell it', () => {
  // A key that matches no field (a package added or left out, a typo) would limit nothing, silently.
  const roots = [protoRoot('meshid/v1/agent.proto'), workload, sds];
  for (const key of REPEATED_LIMITS.keys()) {
    const dot = key.lastIndexOf('.');
    const [typeName, fieldName] = [key.slice(0, dot), key.slice(dot + 1)];
    const types = roots.map((root) => root.lookup(typeName)).filter((t): t is protobuf.Type => t instanceof protobuf.Type && t.fullName === `.${typeName}`);
    assert.equal(types.length, 1, `${key}: no request type ${typeName}`);
    const field = types[0]!.fields[fieldName];
    assert.ok(field !== undefined && (field.repeated || field instanceof protobuf.MapField), `${key}: no repeated field ${fieldName}`);
  }
});

test('a request holding more values in all than its type allows is refused at the first value past the limit, wherever they sit', () => {
  const over = `envoy.service.discovery.v3.DiscoveryRequest holds more than ${MAX_SDS_REQUEST_VALUES} values in all (fields at any depth, each list element counted), the most one request may carry`;
  // The node field itself is one value; its client features are the rest.
  const features = (n: number): Buffer => message(node(...Array.from({ length: n }, () => delimited(10, ''))));
  assert.equal(wireProblem(DISCOVERY, features(MAX_SDS_REQUEST_VALUES - 1)), undefined);
  assert.equal(wireProblem(DISCOVERY, features(MAX_SDS_REQUEST_VALUES)), over);
  // Spread over a Struct's keys (4 values each: entry, key, value, its kind) and unknown fields, counted alike.
  const leaves = (n: number): number[][] => Array.from({ length: n }, (_, i) => delimited(1, [...delimited(1, `k${i}`), ...delimited(2, delimited(3, ''))]));
  // The node and metadata fields, 12,000 keys, and unknown fields up to the limit.
  const spread = (unknown: number): Buffer => message(node(delimited(3, leaves(12_000).flat())), Array(unknown).fill(varintField(99, 0)).flat());
  const room = MAX_SDS_REQUEST_VALUES - 2 - 4 * 12_000;
  assert.equal(wireProblem(DISCOVERY, spread(room)), undefined);
  assert.equal(wireProblem(DISCOVERY, spread(room + 1)), over);
  // Two million unknown fields in 4 MB: the walk stops at the limit rather than reading them all.
  assert.equal(wireProblem(DISCOVERY, Buffer.alloc(4_000_000).fill(Buffer.from([0x78, 0x00]))), over);
});

test('packed list elements count one value each (a type made for the test, under a limited name)', () => {
  const renew = protobuf.Root.fromJSON({
    nested: { meshid: { nested: { agent: { nested: { v1: { nested: { RenewRequest: { fields: { ids: { rule: 'repeated', type: 'int64', id: 1 }, f: { rule: 'repeated', type: 'fixed32', id: 2 } } } } } } } } } },
  }).lookupType('meshid.agent.v1.RenewRequest');
  const limit = REQUEST_VALUE_LIMITS.get('meshid.agent.v1.RenewRequest')!;
  // One value for the field itself, the rest its elements.
  assert.equal(wireProblem(renew, message(delimited(1, Array(limit - 1).fill(1)))), undefined);
  assert.match(wireProblem(renew, message(delimited(1, Array(limit).fill(1)))) ?? '', /RenewRequest holds more than 1000 values in all/);
  assert.equal(wireProblem(renew, message(delimited(2, Array((limit - 1) * 4).fill(0)))), undefined);
  assert.match(wireProblem(renew, message(delimited(2, Array(limit * 4).fill(0)))) ?? '', /RenewRequest holds more than 1000 values in all/);
});

test('every request type the agent socket and the agent API serve has a value limit, except Sync', () => {
  const reflection = path.dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json'));
  const served: Array<[protobuf.Root, string]> = [
    [protoRoot('meshid/v1/agent.proto'), 'meshid.agent.v1.Node'],
    [workload, 'SpiffeWorkloadAPI'],
    [sds, 'envoy.service.secret.v3.SecretDiscoveryService'],
    [protoRoot('grpc/health/v1/health.proto'), 'grpc.health.v1.Health'],
    ...['v1', 'v1alpha'].map((v): [protobuf.Root, string] => [
      protoRoot(path.join(reflection, 'build/proto/grpc/reflection', v, 'reflection.proto')),
      `grpc.reflection.${v}.ServerReflection`,
    ]),
  ];
  const requestTypes = new Set<string>();
  for (const [root, serviceName] of served) {
    for (const method of Object.values(root.lookupService(serviceName).methods)) {
      requestTypes.add((method.resolve() as protobuf.Method).resolvedRequestType!.fullName.replace(/^\./, ''));
    }
  }
  for (const typeName of requestTypes) {
    if (typeName === 'meshid.agent.v1.SyncRequest') continue;
    assert.ok(REQUEST_VALUE_LIMITS.has(typeName), `${typeName} has no value limit`);
  }
  // A key naming no served type (a typo, a package left out) would limit nothing, silently.
  for (const typeName of REQUEST_VALUE_LIMITS.keys()) assert.ok(requestTypes.has(typeName), `${typeName} is no request type served`);
});

test('the Workload API\'s requests hold at most 1000 values in all, far below the SDS limit', () => {
  const X509 = workload.lookupType('X509SVIDRequest');
  const unknown = (n: number): Buffer => message(Array(n).fill(varintField(99, 0)).flat());
  for (const type of [X509, JWT, workload.lookupType('ValidateJWTSVIDRequest')]) {
    const name = type.fullName.replace(/^\./, '');
    assert.equal(wireProblem(type, unknown(1000)), undefined, name);
    assert.equal(wireProblem(type, unknown(1001)), `${name} holds more than 1000 values in all (fields at any depth, each list element counted), the most one request may carry`);
  }
});
