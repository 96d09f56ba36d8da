import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { parseSelector } from '../../../src/common/spiffe/selector.js';
import { encodeOnce } from '../../../src/agent/workload/encode-once.js';
import { WORKLOAD_PROTO, WORKLOAD_SERVICE_NAME, workloadApiServiceDefinition } from '../../../src/agent/workload/handler.js';
import { sameX509SvidResponse, x509SvidResponse } from '../../../src/agent/workload/x509-response.js';
import { FakeWorkloadCache, TestCa } from '../../support/fake-workload-cache.js';

/*
 * Stream opens with the same entitlements share one X509SVIDResponse object, and the Workload API encodes each
 * response object once: what a burst of FetchX509SVID opens costs in protobuf encoding is one encoding per content.
 */

const APP_A = 'spiffe://example.org/app/a';
const APP_B = 'spiffe://example.org/app/b';
const A = [parseSelector('unix:uid:1001')];
const AB = [parseSelector('unix:uid:1001'), parseSelector('unix:uid:1002')];

let ca: TestCa;
let cache: FakeWorkloadCache;
before(() => {
  ca = new TestCa('example.org');
  cache = new FakeWorkloadCache(ca);
  cache.addEntry('unix:uid:1001', APP_A);
  cache.addEntry('unix:uid:1002', APP_B);
});
after(() => ca.dispose());

test('snapshots of the same cache objects give the same response object (stubbed cache: FakeWorkloadCache)', () => {
  const first = x509SvidResponse(cache.snapshot(A));
  assert.ok(first !== undefined);
  assert.equal(x509SvidResponse(cache.snapshot(A)), first);
  assert.equal(first.svids[0]!.spiffe_id, APP_A);
  assert.ok(sameX509SvidResponse(first, first));
});

test('another entitlement set, a re-issued SVID or a new bundle gives a new response with the new content (stubbed cache: FakeWorkloadCache)', () => {
  const a = x509SvidResponse(cache.snapshot(A))!;
  const ab = x509SvidResponse(cache.snapshot(AB))!;
  assert.notEqual(ab, a);
  assert.deepEqual(ab.svids.map((s) => s.spiffe_id), [APP_A, APP_B]);
  assert.equal(x509SvidResponse(cache.snapshot(A)), a, 'A is still shared after AB was built');

  cache.rotate(APP_A);
  const rotated = x509SvidResponse(cache.snapshot(A))!;
  assert.notEqual(rotated, a);
  assert.ok(!rotated.svids[0]!.x509_svid.equals(a.svids[0]!.x509_svid));
  assert.ok(rotated.svids[0]!.x509_svid.equals(Buffer.concat(cache.svidOf(APP_A).chain)));

  cache.bumpOwnBundle();
  const rebundled = x509SvidResponse(cache.snapshot(A))!;
  assert.notEqual(rebundled, rotated);
});

test('an equal version in a different object is not trusted to be the same content (stubbed cache: FakeWorkloadCache)', () => {
  const snapshot = cache.snapshot(A);
  const first = x509SvidResponse(snapshot)!;
  const svid = snapshot.svids[0]!;
  const lookalike = { ...svid, privateKey: Buffer.from('another key') };
  const other = x509SvidResponse({ ...snapshot, svids: [lookalike] })!;
  assert.notEqual(other, first);
  assert.deepEqual(other.svids[0]!.x509_svid_key, Buffer.from('another key'));
});

test('the Workload API encodes a response object once and gives the same bytes as plain encoding (stubbed cache: FakeWorkloadCache)', () => {
  const plain = serviceOf(loadProto(WORKLOAD_PROTO), WORKLOAD_SERVICE_NAME);
  const definition = workloadApiServiceDefinition();
  const response = x509SvidResponse(cache.snapshot(AB))!;
  const once = definition['FetchX509SVID']!.responseSerialize(response);
  assert.equal(definition['FetchX509SVID']!.responseSerialize(response), once, 'the second call returns the same bytes');
  assert.deepEqual(once, plain['FetchX509SVID']!.responseSerialize(response));
  assert.equal(definition['FetchJWTSVID']!.responseSerialize, plain['FetchJWTSVID']!.responseSerialize, 'other methods are untouched');
});

test('encodeOnce calls the serializer once per object and refuses an unknown method', () => {
  let calls = 0;
  const definition = {
    M: {
      path: '/S/M',
      requestStream: false,
      responseStream: true,
      requestSerialize: (v: unknown) => Buffer.from(String(v)),
      requestDeserialize: (b: Buffer) => b.toString(),
      responseSerialize: (v: unknown) => (calls++, Buffer.from(JSON.stringify(v))),
      responseDeserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
    },
  };
  const wrapped = encodeOnce(definition, ['M']);
  const x = { a: 1 };
  wrapped['M']!.responseSerialize(x);
  wrapped['M']!.responseSerialize(x);
  wrapped['M']!.responseSerialize({ a: 1 });
  assert.equal(calls, 2, 'once for x, once for the equal but distinct object');
  assert.throws(() => encodeOnce(definition, ['N']), /no method N/);
});
