/**
 * An in-process meshid-server in upstream CA mode, restarted on one data dir with other upstream files, and a test
 * client playing agents over real mTLS gRPC: what the upstream revoke-and-restart tests share.
 */
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../src/common/clock.js';
import type { Logger } from '../../src/common/log.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { compileServerConfig, type RawServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { NO_AGENT_CERTIFICATE, svidNotAnchoredAtHandshake } from '../../src/server/api/agent-auth.js';
import { connectNode, nodeCall, type AgentIdentity } from './node-api-client.js';
import { teardown } from './teardown.js';

/** What became of an agent's call on a new connection: the TLS layer refused its certificate, the handler did, or neither. */
export type Verdict = 'passes' | 'refused at TLS' | 'refused per call';

/** `files` concatenated into `dir/name` (a PEM bundle or chain). */
export function concat(dir: string, name: string, files: string[]): string {
  const out = path.join(dir, name);
  fs.writeFileSync(out, files.map((f) => fs.readFileSync(f, 'utf8')).join(''));
  return out;
}

export interface UpstreamRestarts {
  readonly adminSocket: string;
  readonly admin: AdminClient;
  /** Stops the server running (if any) and starts one on the same data dir and port with `upstream`. */
  restart(upstream: RawServerConfig): Promise<MeshidServer>;
  /** The trust bundle the server publishes now. */
  bundle(): Promise<Buffer[]>;
  /** A new agent attested with a fresh join token; `rootsPem` to trust the server by, the current bundle if omitted. */
  attest(rootsPem?: string): Promise<AgentIdentity>;
  /** What becomes of `agent`'s call on a new connection. */
  verdict(agent: AgentIdentity, rootsPem?: string): Promise<Verdict>;
}

/** Starts the server in `dir` with `upstream`; stopped, with its admin client closed, after the test. */
export async function startUpstreamServer(
  t: { after(fn: () => unknown): void },
  dir: string,
  upstream: RawServerConfig,
  clock: Clock,
  log: Logger,
): Promise<UpstreamRestarts> {
  const adminSocket = path.join(dir, 'admin', 'admin.sock');
  let port = 0;
  let server: MeshidServer | undefined;
  const restart = async (next: RawServerConfig): Promise<MeshidServer> => {
    await server?.stop();
    server = await MeshidServer.start({
      config: compileServerConfig({
        trust_domain: 'example.org',
        datacenters: ['east'],
        data_dir: path.join(dir, 'data'),
        bind_address: `127.0.0.1:${port}`,
        admin_socket: adminSocket,
        ...next,
      }),
      log,
      clock,
    });
    port = server.agentPort;
    return server;
  };
  await restart(upstream);
  teardown(t).after(() => server?.stop());
  const admin = new AdminClient(adminSocket);
  teardown(t).after(() => admin.close());
  const bundle = async (): Promise<Buffer[]> => (await admin.call('Bundles', 'GetBundle', {})).x509_authorities ?? [];
  const roots = async (rootsPem?: string): Promise<string> => rootsPem ?? certificatesToPem(await bundle());
  return {
    adminSocket,
    admin,
    restart,
    bundle,
    async attest(rootsPem) {
      const { privateKey, publicKey } = generateKeyPair('ec-p256');
      const token = (await admin.call('Tokens', 'GenerateJoinToken', { datacenter: 'east' })).token!;
      const client = connectNode({ port: () => port }, await roots(rootsPem));
      try {
        const res = await nodeCall<{ spiffe_id: string; svid_chain: Buffer[] }>(client, 'Attest', { join_token: token, csr: await createCsr(privateKey, publicKey) });
        return { id: res.spiffe_id, chain: res.svid_chain, key: privateKey };
      } finally {
        client.close();
      }
    },
    async verdict(agent, rootsPem) {
      const client = connectNode({ port: () => port }, await roots(rootsPem), agent);
      try {
        await nodeCall(client, 'SignX509Svids', { items: [] });
        return 'passes';
      } catch (err) {
        const e = err as grpc.ServiceError;
        if (e.code === grpc.status.UNAUTHENTICATED && e.details === NO_AGENT_CERTIFICATE) return 'refused at TLS';
        // One of the server's own SVIDs under a revoked root: the handshake refused it, and its calls say so.
        if (e.code === grpc.status.PERMISSION_DENIED && e.details === svidNotAnchoredAtHandshake(agent.id)) return 'refused at TLS';
        assert.equal(grpc.status[e.code], 'PERMISSION_DENIED', e.details);
        return 'refused per call';
      } finally {
        client.close();
      }
    },
  };
}
