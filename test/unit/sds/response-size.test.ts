/**
 * The byte counts DeltaSecrets splits its responses by (response-size.ts) are the encoder's own: a Resource or a removed
 * name counted short would let a part grow past DELTA_RESPONSE_BYTES by a few bytes per secret, one counted long would
 * split early. Names and values around the lengths where a varint grows (128, 16384).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { protoRoot } from '../../../src/common/grpc/proto.js';
import { deltaResourceBytes, removedNameBytes } from '../../../src/agent/sds/response-size.js';

const DeltaDiscoveryResponse = protoRoot('envoy/service/discovery/v3/discovery.proto').lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse');
const encodedLength = (fields: Record<string, unknown>): number => DeltaDiscoveryResponse.encode(DeltaDiscoveryResponse.fromObject(fields)).finish().length;

test('deltaResourceBytes and removedNameBytes are what the encoder writes for one resource or one removed name', () => {
  const typeUrl = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
  for (const nameLength of [1, 127, 128, 300]) {
    const name = `spiffe://example.org/${'n'.repeat(nameLength)}`;
    assert.equal(removedNameBytes(name), encodedLength({ removed_resources: [name] }), `a removed name of ${name.length} bytes`);
    for (const valueLength of [0, 100, 127, 128, 16383, 16384, 200_000]) {
      const resource = { type_url: typeUrl, value: Buffer.alloc(valueLength, 7) };
      const version = 'e3b0c44298fc1c14';
      assert.equal(
        deltaResourceBytes(name, version, resource),
        encodedLength({ resources: [{ name, version, resource }] }),
        `a resource named in ${name.length} bytes holding ${valueLength} bytes`,
      );
    }
  }
  assert.equal(removedNameBytes('spiffe://example.org/é'), encodedLength({ removed_resources: ['spiffe://example.org/é'] }), 'counted in UTF-8 bytes');
});
