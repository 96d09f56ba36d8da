import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { protoRoot } from '../../../src/common/grpc/proto.js';
import { encodeSharedBodies, NoncedResponse } from '../../../src/agent/sds/nonced-response.js';
import { sdsServiceDefinition } from '../../../src/agent/sds/handler.js';

const DiscoveryResponse = protoRoot('envoy/service/discovery/v3/discovery.proto').lookupType('envoy.service.discovery.v3.DiscoveryResponse');
const decode = (b: Buffer): Record<string, unknown> => DiscoveryResponse.toObject(DiscoveryResponse.decode(b), { defaults: false, bytes: Buffer });

test('a NoncedResponse encodes as the body plus its nonce, which a protobuf parser reads as one message', () => {
  const serialize = sdsServiceDefinition()['StreamSecrets']!.responseSerialize;
  const body = { version_info: 'v1', resources: [{ type_url: 'type.googleapis.com/x', value: Buffer.from('secret bytes') }], type_url: 'type.googleapis.com/x' };
  for (const nonce of ['1', 'n'.repeat(200), '']) {
    const m = decode(serialize(new NoncedResponse(body, nonce)));
    assert.equal(m['version_info'], 'v1');
    assert.equal(m['nonce'], nonce === '' ? undefined : nonce);
    assert.deepEqual((m['resources'] as Array<{ value: Buffer }>)[0]!.value, Buffer.from('secret bytes'));
  }
  // A plain response object is serialized as before.
  assert.equal(decode(serialize({ version_info: 'v2', nonce: '9' }))['nonce'], '9');
});

test('the body is encoded once however many streams send it; another body object is encoded afresh', () => {
  let calls = 0;
  const fake = { M: { path: '/s/M', requestStream: true, responseStream: true, responseSerialize: (v: unknown) => (calls++, Buffer.from(JSON.stringify(v))) } };
  const serialize = encodeSharedBodies(fake as unknown as ServiceDefinition, ['M'])['M']!.responseSerialize;
  const body = { version_info: 'v1' };
  for (let i = 0; i < 1000; i++) serialize(new NoncedResponse(body, String(i)));
  assert.equal(calls, 1);
  serialize(new NoncedResponse({ version_info: 'v1' }, '1'));
  assert.equal(calls, 2);
  assert.throws(() => encodeSharedBodies(fake as unknown as ServiceDefinition, ['Missing']), /no method Missing/);
});

test('the streams of a push that send one body under one nonce share its bytes; each nonce still decodes as its own', () => {
  const serialize = sdsServiceDefinition()['StreamSecrets']!.responseSerialize;
  const body = { version_info: 'v1', resources: [{ type_url: 'type.googleapis.com/x', value: Buffer.from('secret bytes') }], type_url: 'type.googleapis.com/x' };
  const sent = Array.from({ length: 1000 }, () => serialize(new NoncedResponse(body, '7')));
  assert.equal(new Set(sent).size, 1, 'one buffer for 1,000 sends of the same body and nonce');
  assert.equal(decode(sent[0]!)['nonce'], '7');
  // Streams whose nonce counts drifted apart: each nonce its own bytes, each still right after others came between.
  for (const nonce of ['8', '9', '10', '7', '8']) assert.equal(decode(serialize(new NoncedResponse(body, nonce)))['nonce'], nonce);
  assert.notEqual(serialize(new NoncedResponse({ ...body }, '7')), sent[0], 'another body object gets bytes of its own');
});

test('a nonce of any length or script decodes as itself, its length written in as many varint bytes as it takes', () => {
  const serialize = sdsServiceDefinition()['StreamSecrets']!.responseSerialize;
  const body = { version_info: 'v1', type_url: 'type.googleapis.com/x' };
  // 127 and 128, 16383 and 16384: the lengths where the varint of the nonce's length grows by a byte.
  for (const nonce of [...[1, 127, 128, 129, 16383, 16384].map((n) => 'n'.repeat(n)), 'é'.repeat(64), 'ñ'.repeat(100), '\u{1F512}'.repeat(40)]) {
    const bytes = serialize(new NoncedResponse(body, nonce));
    const m = decode(bytes);
    assert.equal(m['nonce'], nonce, `a nonce of ${nonce.length} UTF-16 units`);
    assert.equal(m['version_info'], 'v1');
    // protobufjs's decoder reads a known field by its declared type whatever wire type the tag says; Envoy's does not.
    // The bytes must be what a protobuf encoder writes for the whole message: its fields in order, the nonce (5) last.
    assert.deepEqual(bytes, serialize({ ...body, nonce }), `the encoder's own bytes, for a nonce of ${nonce.length} UTF-16 units`);
  }
});

test('a body keeps the bytes of its four latest nonces: a fifth drops the oldest, which is encoded afresh if it comes again', () => {
  const serialize = sdsServiceDefinition()['StreamSecrets']!.responseSerialize;
  const body = { version_info: 'v1', type_url: 'type.googleapis.com/x' };
  const first = ['1', '2', '3', '4'].map((n) => serialize(new NoncedResponse(body, n)));
  assert.equal(serialize(new NoncedResponse(body, '1')), first[0], 'four nonces are kept');
  serialize(new NoncedResponse(body, '5'));
  assert.equal(serialize(new NoncedResponse(body, '2')), first[1], 'the others stay');
  const again = serialize(new NoncedResponse(body, '1'));
  assert.notEqual(again, first[0], 'the oldest was dropped: the map of a long-lived body stays small');
  assert.deepEqual(again, first[0], 'and its bytes are the same when made again');
});
