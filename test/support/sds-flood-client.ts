/**
 * A local process flooding the agent socket with the SDS requests that cost the most to decode within the value
 * limits (a Node whose metadata Struct holds 12,499 keys, ~150 KB, ~7 ms to decode each), for the fairness tests.
 * Usage: node sds-flood-client.js SOCKET CONNECTIONS CALLS_PER_CONNECTION. Keeps that many calls in flight until
 * killed and writes one "." to stdout per call answered, whatever the answer.
 */
import * as grpc from '@grpc/grpc-js';
import { protoRoot } from '../../src/common/grpc/proto.js';
import { raw } from './raw-method.js';

const [socketPath, connections = '2', callsPerConnection = '4'] = process.argv.slice(2);
const request = protoRoot('envoy/service/secret/v3/sds.proto').lookupType('envoy.service.discovery.v3.DiscoveryRequest');
const fields: Record<string, { bool_value: boolean }> = {};
for (let i = 0; i < 12_499; i++) fields[`k${String(i).padStart(5, '0')}`] = { bool_value: true };
const body = Buffer.from(
  request.encode(request.fromObject({ node: { id: 'flood', metadata: { fields } }, resource_names: ['default'], type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret' })).finish(),
);
for (let c = 0; c < Number(connections); c++) {
  // A distinct option value keeps each client on a connection of its own.
  const client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure(), { 'meshid.test.flood-connection': c });
  const loop = (): void => {
    client.makeUnaryRequest('/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', raw, raw, body, () => {
      process.stdout.write('.');
      loop();
    });
  };
  for (let i = 0; i < Number(callsPerConnection); i++) loop();
}
