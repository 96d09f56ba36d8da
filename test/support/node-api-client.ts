/**
 * A test client playing an agent against a meshid-server process's agent API (meshid.agent.v1.Node): mTLS with the
 * server's SVID checked against the bundle, join-token attestation, and promisified unary calls.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { TLS_NAME } from '../../src/agent/client/node-client.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { generateKeyPair, exportPkcs8Pem } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import type { ServerProcess } from './server-process.js';
import { until } from './until.js';
import { teardown } from './teardown.js';

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
  // The agent's TLS name, as the agent sends it: without it grpc-js sends the IP as SNI, which Node warns about (DEP0123).
  return new Node(`127.0.0.1:${server.port()}`, creds, { 'grpc.ssl_target_name_override': TLS_NAME }) as unknown as NodeClient;
}

export function nodeCall<Res>(client: NodeClient, method: string, req: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method]!(req, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * Spends what is left of an agent's signing budget with SignX509Svids calls of bogus entries (charged before they are
 * looked at), halving the batch after each refusal; returns the last refusal.
 */
export async function spendSigningBudget(client: NodeClient): Promise<grpc.ServiceError> {
  let refusal: grpc.ServiceError | undefined;
  for (let n = 1000; n >= 1; ) {
    const items = Array.from({ length: n }, (_, i) => ({ entry_id: `no-such-entry-${i}`, csr: Buffer.alloc(0) }));
    try {
      await nodeCall(client, 'SignX509Svids', { items });
    } catch (err) {
      refusal = err as grpc.ServiceError;
      n = Math.floor(n / 2);
    }
  }
  return refusal!;
}

/** A join token for the datacenter east, from `meshid-server token generate`. */
export async function joinToken(server: ServerProcess, extra: string[] = []): Promise<string> {
  const r = await server.cli(['token', 'generate', '--datacenter', 'east', ...extra]);
  assert.equal(r.code, 0, r.err);
  return /Token: (\S+)/.exec(r.out)![1]!;
}

/** Attests a new agent with a fresh join token and key; returns its SVID and key. */
export async function attestAgent(server: ServerProcess, rootsPem: string): Promise<AgentIdentity> {
  return attestWithToken(server, rootsPem, await joinToken(server));
}

/** Attests a new agent with join token `token` and a fresh key, with no agent running on it; returns its SVID and key. */
export async function attestWithToken(server: Pick<ServerProcess, 'port'>, rootsPem: string, token: string): Promise<AgentIdentity> {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const client = connectNode(server, rootsPem);
  try {
    const res = await nodeCall<{ spiffe_id: string; svid_chain: Buffer[] }>(client, 'Attest', {
      join_token: token,
      csr: await createCsr(privateKey, publicKey),
    });
    return { id: res.spiffe_id, chain: res.svid_chain, key: privateKey };
  } finally {
    client.close();
  }
}

/**
 * Sends `bytes` as they are (no encoding) to Node method `method` and resolves with the error it is answered with;
 * rejects if it is answered with a message instead. For requests no client would encode: the answer shows whether the
 * server decoded them (INVALID_ARGUMENT) or refused them before that.
 */
export function rawNodeCall(client: grpc.Client, method: string, bytes: Buffer, stream: boolean): Promise<grpc.ServiceError> {
  const asIs = (b: Buffer): Buffer => b;
  return new Promise((resolve, reject) => {
    if (stream) {
      const call = client.makeServerStreamRequest(`/meshid.agent.v1.Node/${method}`, asIs, asIs, bytes, new grpc.Metadata());
      call.on('data', () => reject(new Error(`${method} answered`)));
      call.on('error', resolve);
    } else {
      client.makeUnaryRequest(`/meshid.agent.v1.Node/${method}`, asIs, asIs, bytes, (err) => (err ? resolve(err) : reject(new Error(`${method} answered`))));
    }
  });
}

/** Opens a Sync stream on `client`; resolves once its first update is in, with the error it ends with. */
export async function openSync(client: NodeClient, t: { after: (fn: () => void) => void }): Promise<{ ended: () => grpc.ServiceError | undefined }> {
  const stream = (client['Sync'] as (req: unknown) => grpc.ClientReadableStream<unknown>)({});
  teardown(t).after(() => stream.cancel());
  let first = false;
  let ended: grpc.ServiceError | undefined;
  stream.on('data', () => (first = true));
  stream.on('error', (e: grpc.ServiceError) => (ended = e));
  await until('the first update', () => (first ? true : ended));
  assert.equal(ended, undefined, ended?.details);
  return { ended: () => ended };
}

/**
 * The refusal an agent SVID expired by the server's clock gets, word for word as an operator reads it (spelt out here,
 * not taken from the server's code, so a change of wording fails the tests that expect it).
 */
export function expiredSvidRefusalText(agentId: string, notAfter: number, serverNow: number): string {
  return (
    `must re-attest: agent ${agentId}'s SVID expired at ${new Date(notAfter).toISOString()} by meshid-server's clock, which reads ` +
    `${new Date(serverNow).toISOString()}; attest again with a new join token. An agent whose own clock still takes the SVID ` +
    "for valid runs behind the server's: synchronise the clocks (chrony or ntpd; timedatectl status)"
  );
}
