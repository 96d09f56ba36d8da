import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GrpcObject, ServiceClientConstructor, MethodDefinition } from '@grpc/grpc-js';
import { fromStruct, loadProto, packAny } from '../../../src/common/grpc/proto.js';
import { bytesField, encodeFields, layout, readFields } from './wire-reader.js';

const SECRET_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const SPIFFE_VALIDATOR_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';

type AnyMethod = MethodDefinition<unknown, unknown>;

function sdsMethods(): Record<string, AnyMethod> {
  const loaded = loadProto('envoy/service/secret/v3/sds.proto');
  const v3 = ((loaded['envoy'] as GrpcObject)['service'] as GrpcObject)['secret'] as GrpcObject;
  const ctor = (v3['v3'] as GrpcObject)['SecretDiscoveryService'] as ServiceClientConstructor;
  return ctor.service as unknown as Record<string, AnyMethod>;
}

const CHAIN_PEM = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
const KEY_PEM = Buffer.from('-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n');
const ROOTS_PEM = Buffer.from('-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n');

test('SDS service paths and streaming kinds are exactly Envoy\'s', () => {
  const m = sdsMethods();
  assert.deepEqual(Object.keys(m).sort(), ['DeltaSecrets', 'FetchSecrets', 'StreamSecrets']);
  assert.equal(m['StreamSecrets']!.path, '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets');
  assert.equal(m['DeltaSecrets']!.path, '/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets');
  assert.equal(m['FetchSecrets']!.path, '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets');
  assert.deepEqual([m['StreamSecrets']!.requestStream, m['StreamSecrets']!.responseStream], [true, true]);
  assert.deepEqual([m['DeltaSecrets']!.requestStream, m['DeltaSecrets']!.responseStream], [true, true]);
  assert.deepEqual([m['FetchSecrets']!.requestStream, m['FetchSecrets']!.responseStream], [false, false]);
});

test('DiscoveryResponse with an Any(Secret{tls_certificate}) has the SPEC-NOTES §14 wire tags', () => {
  const secret = packAny('envoy.extensions.transport_sockets.tls.v3.Secret', {
    name: 'spiffe://example.org/web',
    tls_certificate: { certificate_chain: { inline_bytes: CHAIN_PEM }, private_key: { inline_bytes: KEY_PEM } },
  });
  assert.equal(secret.type_url, SECRET_URL);
  const wire = sdsMethods()['StreamSecrets']!.responseSerialize({
    version_info: 'v1',
    resources: [secret],
    type_url: SECRET_URL,
    nonce: 'n1',
  });
  // DiscoveryResponse: 1 version_info, 2 resources (Any), 4 type_url, 5 nonce — all length-delimited.
  assert.deepEqual(layout(wire).sort(), ['1:2', '2:2', '4:2', '5:2']);
  assert.equal(bytesField(wire, 1).toString(), 'v1');
  assert.equal(bytesField(wire, 4).toString(), SECRET_URL);
  assert.equal(bytesField(wire, 5).toString(), 'n1');
  // Any: 1 type_url, 2 value.
  const any = bytesField(wire, 2);
  assert.deepEqual(layout(any), ['1:2', '2:2']);
  assert.equal(bytesField(any, 1).toString(), SECRET_URL);
  // Secret: 1 name, 2 tls_certificate.
  const secretBytes = bytesField(any, 2);
  assert.deepEqual(layout(secretBytes), ['1:2', '2:2']);
  assert.equal(bytesField(secretBytes, 1).toString(), 'spiffe://example.org/web');
  // TlsCertificate: 1 certificate_chain, 2 private_key; DataSource: 2 inline_bytes.
  const tls = bytesField(secretBytes, 2);
  assert.deepEqual(layout(tls), ['1:2', '2:2']);
  assert.deepEqual(layout(bytesField(tls, 1)), ['2:2']);
  assert.deepEqual(bytesField(bytesField(tls, 1), 2), CHAIN_PEM);
  assert.deepEqual(bytesField(bytesField(tls, 2), 2), KEY_PEM);
});

test('validation_context Secret with the SPIFFE validator has the SPEC-NOTES §14.4 wire tags', () => {
  const validator = packAny('envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig', {
    trust_domains: [{ name: 'example.org', trust_bundle: { inline_bytes: ROOTS_PEM } }],
  });
  assert.equal(validator.type_url, SPIFFE_VALIDATOR_URL);
  const secret = packAny('envoy.extensions.transport_sockets.tls.v3.Secret', {
    name: 'ROOTCA',
    validation_context: {
      trusted_ca: { inline_bytes: ROOTS_PEM },
      allow_expired_certificate: true,
      custom_validator_config: { name: 'envoy.tls.cert_validator.spiffe', typed_config: validator },
      match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://example.org/' } }],
    },
  });
  const secretBytes = secret.value;
  // Secret: 1 name, 4 validation_context.
  assert.deepEqual(layout(secretBytes), ['1:2', '4:2']);
  const cvc = bytesField(secretBytes, 4);
  // CertificateValidationContext: 1 trusted_ca, 8 allow_expired_certificate (varint), 12 custom_validator_config, 15 SAN matchers.
  assert.deepEqual(layout(cvc).sort(), ['12:2', '15:2', '1:2', '8:0']);
  assert.deepEqual(bytesField(bytesField(cvc, 1), 2), ROOTS_PEM);
  assert.deepEqual(readFields(cvc).find((f) => f.field === 8)!.value, 1n);
  const typedExt = bytesField(cvc, 12);
  assert.equal(bytesField(typedExt, 1).toString(), 'envoy.tls.cert_validator.spiffe');
  const anyBytes = bytesField(typedExt, 2);
  assert.equal(bytesField(anyBytes, 1).toString(), SPIFFE_VALIDATOR_URL);
  const trustDomain = bytesField(bytesField(anyBytes, 2), 1);
  assert.equal(bytesField(trustDomain, 1).toString(), 'example.org');
  assert.deepEqual(bytesField(bytesField(trustDomain, 2), 2), ROOTS_PEM);
  // SubjectAltNameMatcher: 1 san_type URI = 3, 2 matcher → StringMatcher 2 prefix.
  const san = bytesField(cvc, 15);
  assert.deepEqual(readFields(san)[0], { field: 1, wireType: 0, value: 3n });
  assert.equal(bytesField(bytesField(san, 2), 2).toString(), 'spiffe://example.org/');
});

test('DeltaDiscoveryResponse and Resource have the SPEC-NOTES §14.3 wire tags', () => {
  const secret = packAny('envoy.extensions.transport_sockets.tls.v3.Secret', { name: 'default', tls_certificate: {} });
  const wire = sdsMethods()['DeltaSecrets']!.responseSerialize({
    system_version_info: 'sys',
    resources: [{ version: 'r1', resource: secret, name: 'default' }],
    type_url: SECRET_URL,
    nonce: 'n2',
    removed_resources: ['gone'],
  });
  assert.deepEqual(layout(wire).sort(), ['1:2', '2:2', '4:2', '5:2', '6:2']);
  assert.equal(bytesField(wire, 6).toString(), 'gone');
  assert.equal(bytesField(wire, 5).toString(), 'n2');
  const resource = bytesField(wire, 2);
  assert.deepEqual(layout(resource).sort(), ['1:2', '2:2', '3:2']);
  assert.equal(bytesField(resource, 1).toString(), 'r1');
  assert.equal(bytesField(resource, 3).toString(), 'default');
  assert.equal(bytesField(bytesField(resource, 2), 1).toString(), SECRET_URL);
});

test('a hand-encoded DiscoveryRequest from Envoy decodes into keepCase fields, node and NACK detail included', () => {
  const struct = encodeFields([[1, encodeFields([[1, 'disable_spiffe_cert_validation'], [2, encodeFields([[4, 1]])]])]]);
  const node = encodeFields([
    [1, 'sidecar~10.0.0.1~web'],
    [2, 'web'],
    [3, struct],
    [6, 'envoy'],
    [8, encodeFields([[1, encodeFields([[1, 1], [2, 30], [3, 2]])]])],
    [10, 'xds.config.supports-resource-in-sotw'],
  ]);
  const bytes = encodeFields([
    [1, 'v1'],
    [2, node],
    [3, 'default'],
    [3, 'ROOTCA'],
    [4, SECRET_URL],
    [5, 'n1'],
    [6, encodeFields([[1, 13], [2, 'bad secret']])],
  ]);
  const req = sdsMethods()['StreamSecrets']!.requestDeserialize(bytes) as Record<string, any>;
  assert.equal(req['version_info'], 'v1');
  assert.deepEqual(req['resource_names'], ['default', 'ROOTCA']);
  assert.equal(req['type_url'], SECRET_URL);
  assert.equal(req['response_nonce'], 'n1');
  assert.deepEqual(req['error_detail'], { code: 13, message: 'bad secret' });
  const n = req['node'];
  assert.equal(n.id, 'sidecar~10.0.0.1~web');
  assert.equal(n.cluster, 'web');
  assert.equal(n.user_agent_name, 'envoy');
  assert.equal(n.user_agent_version_type, 'user_agent_build_version');
  assert.deepEqual(n.user_agent_build_version.version, { major_number: 1, minor_number: 30, patch: 2 });
  assert.deepEqual(n.client_features, ['xds.config.supports-resource-in-sotw']);
  // Well-known Value members are camelCase (protobufjs bundles them that way); fromStruct hides it.
  assert.equal(n.metadata.fields.disable_spiffe_cert_validation.boolValue, true);
  assert.deepEqual(fromStruct(n.metadata), { disable_spiffe_cert_validation: true });
});

test('a hand-encoded DeltaDiscoveryRequest decodes subscribe/unsubscribe, initial versions and nonce', () => {
  const bytes = encodeFields([
    [1, encodeFields([[1, 'node-1'], [7, '1.29.0']])],
    [2, SECRET_URL],
    [3, 'default'],
    [4, 'old'],
    [5, encodeFields([[1, 'default'], [2, 'v7']])],
    [6, 'n3'],
    [7, encodeFields([[1, 13]])],
  ]);
  const req = sdsMethods()['DeltaSecrets']!.requestDeserialize(bytes) as Record<string, any>;
  assert.equal(req['node'].id, 'node-1');
  assert.equal(req['node'].user_agent_version, '1.29.0');
  assert.equal(req['type_url'], SECRET_URL);
  assert.deepEqual(req['resource_names_subscribe'], ['default']);
  assert.deepEqual(req['resource_names_unsubscribe'], ['old']);
  assert.deepEqual({ ...req['initial_resource_versions'] }, { default: 'v7' });
  assert.equal(req['response_nonce'], 'n3');
  assert.equal(req['error_detail'].code, 13);
});
