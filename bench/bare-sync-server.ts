/**
 * The baseline peer for S's memory line: a bare grpc-js server holding agents' Sync streams, with meshid-server's
 * own TLS credentials (its SVID, client certificates checked against its bundle) and agent API server options, but
 * none of meshid: each stream gets one empty initial update and is then held open. What this process costs per
 * connected agent is grpc-js's, Node's HTTP/2 and OpenSSL's; what meshid-server costs beyond it is meshid's.
 * Usage: node bare-sync-server.js <server-svid.json> <bundle.pem>; prints its port, then "ready".
 */
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../src/common/grpc/proto.js';
import { serviceOf } from '../src/common/grpc/service.js';
import { MemoryCertificateProvider } from '../src/common/grpc/certificate-provider.js';
import { BASE_SERVER_OPTIONS } from '../src/common/grpc/server-options.js';
import { AGENT_API_SERVER_OPTIONS, AGENT_PROTO } from '../src/server/api/agent-api-options.js';

const [svidFile, bundleFile] = process.argv.slice(2) as [string, string];
const svid = JSON.parse(fs.readFileSync(svidFile, 'utf8')) as { chain_pem: string; key_pem: string };
const provider = new MemoryCertificateProvider();
provider.setCa(fs.readFileSync(bundleFile, 'utf8'));
provider.setIdentity(svid.chain_pem, svid.key_pem);
// Without meshid's interceptors, as the P2 echo baseline: what they keep per call counts as meshid's.
const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, ...AGENT_API_SERVER_OPTIONS, interceptors: [] });
server.addService(serviceOf(loadProto(AGENT_PROTO), 'meshid.agent.v1.Node'), {
  Sync: (call: grpc.ServerWritableStream<unknown, unknown>) => {
    call.write({ revision: 0, initial: true });
  },
});
server.bindAsync('127.0.0.1:0', grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${port}\nready\n`);
});
process.on('SIGTERM', () => server.forceShutdown());
