/**
 * A test client playing an agent against a meshid-server process's agent API (meshid.agent.v1.Node): mTLS with the
 * server's SVID checked against the bundle, join-token attestation, and promisified unary calls.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { generateKeyPair, exportPkcs8Pem } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import type { ServerProcess } from './server-process.js';

export type NodeClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export interface AgentIdentity {
  id: string;
  chain: Buffer[];
  key: KeyObject;
}

const Node = serviceClient(loadProto('meshid/v1/agent.proto'), 'meshid.agent.v1.Node');

function checkServer(_host: string, cert: PeerCertificate): Error | undefined {
  return cert.subjectaltname === 'URI:spiffe://example.org/meshid/server' ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`);
}

/** A client of `server`'s agent API trusting `rootsPem`; with `identity`, it presents that agent SVID. */
export function connectNode(server: Pick<ServerProcess, 'port'>, rootsPem: string, identity?: { chain: Buffer[]; key: KeyObject }): NodeClient {
  const creds = grpc.credentials.createSsl(
    Buffer.from(rootsPem),
    identity ? Buffer.from(exportPkcs8Pem(identity.key)) : null,
    identity ? Buffer.from(certificatesToPem(identity.chain)) : null,
    { checkServerIdentity: checkServer },
  );
  return new Node(`127.0.0.1:${server.port()}`, creds) as unknown as NodeClient;
}

export function nodeCall<Res>(client: NodeClient, method: string, req: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method]!(req, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/** A join token for the datacenter east, from `meshid-server token generate`. */
export async function joinToken(server: ServerProcess, extra: string[] = []): Promise<string> {
  const r = await server.cli(['token', 'generate', '--datacenter', 'east', ...extra]);
  assert.equal(r.code, 0, r.err);
  return /Token: (\S+)/.exec(r.out)![1]!;
}

/** Attests a new agent with a fresh join token and key; returns its SVID and key. */
export async function attestAgent(server: ServerProcess, rootsPem: string): Promise<AgentIdentity> {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const client = connectNode(server, rootsPem);
  try {
    const res = await nodeCall<{ spiffe_id: string; svid_chain: Buffer[] }>(client, 'Attest', {
      join_token: await joinToken(server),
      csr: await createCsr(privateKey, publicKey),
    });
    return { id: res.spiffe_id, chain: res.svid_chain, key: privateKey };
  } finally {
    client.close();
  }
}
