import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceClientConstructor, MethodDefinition } from '@grpc/grpc-js';
import { fromStruct, loadProto, toStruct } from '../../../src/common/grpc/proto.js';
import { bytesField, encodeFields, layout, readFields } from './wire-reader.js';

type AnyMethod = MethodDefinition<unknown, unknown>;

function workloadMethods(): Record<string, AnyMethod> {
  const ctor = loadProto('workload/workload.proto')['SpiffeWorkloadAPI'] as ServiceClientConstructor;
  return ctor.service as unknown as Record<string, AnyMethod>;
}

test('Workload API service has no package: paths are exactly /SpiffeWorkloadAPI/<Method>', () => {
  const m = workloadMethods();
  assert.deepEqual(Object.keys(m).sort(), ['FetchJWTBundles', 'FetchJWTSVID', 'FetchX509Bundles', 'FetchX509SVID', 'ValidateJWTSVID']);
  for (const name of Object.keys(m)) assert.equal(m[name]!.path, `/SpiffeWorkloadAPI/${name}`);
  assert.equal(m['FetchX509SVID']!.path, '/SpiffeWorkloadAPI/FetchX509SVID');
  const kinds = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, `${v.requestStream}/${v.responseStream}`]));
  assert.deepEqual(kinds, {
    FetchX509SVID: 'false/true',
    FetchX509Bundles: 'false/true',
    FetchJWTSVID: 'false/false',
    FetchJWTBundles: 'false/true',
    ValidateJWTSVID: 'false/false',
  });
});

test('X509SVIDResponse has the SPEC-NOTES §14.1 wire tags and decodes bytes as Buffers', () => {
  const method = workloadMethods()['FetchX509SVID']!;
  const svid = { spiffe_id: 'spiffe://example.org/web', x509_svid: Buffer.from([1, 2]), x509_svid_key: Buffer.from([3]), bundle: Buffer.from([4]), hint: 'h' };
  const wire = method.responseSerialize({ svids: [svid], crl: [Buffer.from([9])], federated_bundles: { 'spiffe://other.org': Buffer.from([5, 6]) } });
  assert.deepEqual(layout(wire).sort(), ['1:2', '2:2', '3:2']);
  const x509 = bytesField(wire, 1);
  assert.deepEqual(layout(x509), ['1:2', '2:2', '3:2', '4:2', '5:2']);
  assert.equal(bytesField(x509, 1).toString(), 'spiffe://example.org/web');
  assert.deepEqual(bytesField(x509, 2), Buffer.from([1, 2]));
  assert.deepEqual(bytesField(x509, 3), Buffer.from([3]));
  assert.deepEqual(bytesField(x509, 4), Buffer.from([4]));
  assert.equal(bytesField(x509, 5).toString(), 'h');
  // map<string, bytes> entry: 1 key, 2 value.
  const entry = bytesField(wire, 3);
  assert.equal(bytesField(entry, 1).toString(), 'spiffe://other.org');
  assert.deepEqual(bytesField(entry, 2), Buffer.from([5, 6]));

  const back = method.responseDeserialize(wire) as { svids: Array<typeof svid>; federated_bundles: Record<string, Buffer> };
  assert.ok(Buffer.isBuffer(back.svids[0]!.x509_svid));
  assert.deepEqual(back.svids[0], svid);
  assert.ok(Buffer.isBuffer(back.federated_bundles['spiffe://other.org']));
});

test('bundle responses: X509BundlesResponse 1 crl / 2 bundles, JWTBundlesResponse 1 bundles', () => {
  const m = workloadMethods();
  const x = m['FetchX509Bundles']!.responseSerialize({ crl: [Buffer.from([1])], bundles: { 'spiffe://example.org': Buffer.from([2]) } });
  assert.deepEqual(layout(x), ['1:2', '2:2']);
  assert.equal(bytesField(bytesField(x, 2), 1).toString(), 'spiffe://example.org');
  const j = m['FetchJWTBundles']!.responseSerialize({ bundles: { 'spiffe://example.org': Buffer.from('{"keys":[]}') } });
  assert.deepEqual(layout(j), ['1:2']);
  assert.equal(bytesField(bytesField(j, 1), 2).toString(), '{"keys":[]}');
});

test('JWT messages: JWTSVIDRequest 1 audience (repeated) / 2 spiffe_id; JWTSVID 1 spiffe_id / 2 svid / 3 hint', () => {
  const m = workloadMethods();
  const req = m['FetchJWTSVID']!.requestDeserialize(encodeFields([[1, 'a'], [1, 'b'], [2, 'spiffe://example.org/web']]));
  assert.deepEqual(req, { audience: ['a', 'b'], spiffe_id: 'spiffe://example.org/web' });
  const res = m['FetchJWTSVID']!.responseSerialize({ svids: [{ spiffe_id: 'spiffe://example.org/web', svid: 'a.b.c', hint: 'h' }] });
  const jwt = bytesField(res, 1);
  assert.deepEqual(layout(jwt), ['1:2', '2:2', '3:2']);
  assert.equal(bytesField(jwt, 2).toString(), 'a.b.c');
});

test('ValidateJWTSVID: request 1 audience (singular) / 2 svid; response 1 spiffe_id / 2 claims Struct', () => {
  const m = workloadMethods()['ValidateJWTSVID']!;
  assert.deepEqual(m.requestDeserialize(encodeFields([[1, 'db'], [2, 'a.b.c']])), { audience: 'db', svid: 'a.b.c' });
  const wire = m.responseSerialize({
    spiffe_id: 'spiffe://example.org/web',
    claims: toStruct({ sub: 'spiffe://example.org/web', exp: 1700000000, aud: ['db'], nested: { ok: true, none: null } }),
  });
  assert.deepEqual(layout(wire), ['1:2', '2:2']);
  // Struct: 1 fields (map<string, Value>); Value: 2 number_value (double, wire type 1), 3 string_value.
  const entries = readFields(bytesField(wire, 2)).map((f) => f.value as Buffer);
  const byKey = Object.fromEntries(entries.map((e) => [bytesField(e, 1).toString(), bytesField(e, 2)]));
  assert.equal(bytesField(byKey['sub']!, 3).toString(), 'spiffe://example.org/web');
  const exp = byKey['exp']!;
  assert.equal(exp[0], (2 << 3) | 1);
  assert.equal(exp.readDoubleLE(1), 1700000000);
  // Value: 6 list_value → ListValue 1 values; 5 struct_value.
  assert.equal(bytesField(bytesField(bytesField(byKey['aud']!, 6), 1), 3).toString(), 'db');
  assert.deepEqual(layout(byKey['nested']!), ['5:2']);
  const back = m.responseDeserialize(wire) as { spiffe_id: string; claims: Parameters<typeof fromStruct>[0] };
  assert.deepEqual(fromStruct(back.claims), { sub: 'spiffe://example.org/web', exp: 1700000000, aud: ['db'], nested: { ok: true, none: null } });
});

test('empty placeholder requests decode and unknown fields in them are ignored', () => {
  const m = workloadMethods();
  assert.deepEqual(m['FetchX509SVID']!.requestDeserialize(Buffer.alloc(0)), {});
  assert.deepEqual(m['FetchX509SVID']!.requestDeserialize(encodeFields([[7, 'future']])), {});
});
