import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadProto, packAny, protoRoot, typeUrl, unpackAny } from '../../../src/common/grpc/proto.js';
import { MeshidError } from '../../../src/common/errors.js';

const SECRET = 'envoy.extensions.transport_sockets.tls.v3.Secret';

function invalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof MeshidError && err.code === 'invalid_argument' && pattern.test(err.message);
}

test('loadProto caches per set of files, whatever their order', () => {
  const a = loadProto(['workload/workload.proto', 'envoy/service/secret/v3/sds.proto']);
  const b = loadProto(['envoy/service/secret/v3/sds.proto', 'workload/workload.proto']);
  assert.equal(a, b);
  assert.equal(loadProto('workload/workload.proto'), loadProto(['workload/workload.proto']));
});

test('every proto file in the area loads and resolves (imports, bundled google/protobuf types)', () => {
  const root = protoRoot([
    'workload/workload.proto',
    'envoy/service/secret/v3/sds.proto',
    'envoy/extensions/transport_sockets/tls/v3/secret.proto',
    'envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto',
    'google/rpc/status.proto',
  ]);
  for (const name of ['X509SVID', 'envoy.config.core.v3.Node', 'envoy.type.v3.SemanticVersion', 'google.rpc.Status', 'google.protobuf.Struct']) {
    assert.ok(root.lookupType(name), name);
  }
});

test('packAny / unpackAny round trip a Secret; bytes come back as Buffers', () => {
  const pem = Buffer.from('-----BEGIN CERTIFICATE-----\n');
  const any = packAny(SECRET, { name: 'default', tls_certificate: { certificate_chain: { inline_bytes: pem } } });
  assert.equal(any.type_url, `type.googleapis.com/${SECRET}`);
  assert.equal(typeUrl(`.${SECRET}`), any.type_url);
  const back = unpackAny(any, SECRET) as { name: string; type: string; tls_certificate: { certificate_chain: { inline_bytes: Buffer; specifier: string } } };
  assert.equal(back.name, 'default');
  assert.equal(back.type, 'tls_certificate');
  assert.equal(back.tls_certificate.certificate_chain.specifier, 'inline_bytes');
  assert.ok(Buffer.isBuffer(back.tls_certificate.certificate_chain.inline_bytes));
  assert.deepEqual(back.tls_certificate.certificate_chain.inline_bytes, pem);
  // A decoded object (with its virtual oneof names) encodes again to the same bytes.
  assert.deepEqual(packAny(SECRET, back).value, any.value);
  // Uint8Array input works as well.
  assert.equal(unpackAny({ type_url: any.type_url, value: new Uint8Array(any.value) })['name'], 'default');
});

test('packAny refuses typos, two oneof members and unknown types instead of dropping data', () => {
  assert.throws(() => packAny(SECRET, { name: 'x', tls_certificat: {} }), invalid(/"tls_certificat" is not a field of .*Secret/));
  assert.throws(
    () => packAny(SECRET, { name: 'x', tls_certificate: { certificate_chain: { inline_byte: Buffer.alloc(1) } } }),
    invalid(/Secret\.tls_certificate\.certificate_chain: "inline_byte" is not a field/),
  );
  assert.throws(
    () => packAny(SECRET, { name: 'x', tls_certificate: { certificate_chain: { inline_bytes: Buffer.alloc(1), inline_string: 'a' } } }),
    invalid(/oneof specifier has more than one member set/),
  );
  assert.throws(() => packAny(SECRET, { name: 'x', tls_certificate: {}, validation_context: {} }), invalid(/oneof type/));
  assert.throws(() => packAny('envoy.Nope', {}), invalid(/unknown protobuf message type "envoy\.Nope"/));
  assert.throws(() => packAny(SECRET, { name: 'x', tls_certificate: 'oops' }), invalid(/cannot encode/));
});

test('unpackAny refuses a type other than the expected one and undecodable values', () => {
  const any = packAny('envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig', { trust_domains: [{ name: 'a' }] });
  assert.throws(() => unpackAny(any, SECRET), invalid(/holds .*SPIFFECertValidatorConfig, expected .*Secret/));
  assert.throws(() => unpackAny({ type_url: 'Secret', value: Buffer.alloc(0) }), invalid(/has no "\/"/));
  assert.throws(() => unpackAny({ type_url: typeUrl(SECRET), value: Buffer.from([0x0f]) }), invalid(/not a valid/));
  assert.throws(() => unpackAny({ type_url: typeUrl(SECRET), value: Buffer.from([0x12, 0x05, 0x0a]) }), invalid(/not a valid/));
});
