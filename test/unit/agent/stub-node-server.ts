/**
 * The agent's ServerConnection against a stub meshid-server on loopback (a real gRPC server over TLS answering only
 * the agent API methods a test gives it): for tests of how the connection acts on what the server answers.
 */
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AGENT_API_PROTO, NodeClient } from '../../../src/agent/client/node-client.js';
import type { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import { SvidIssuer, type SvidIssuerOptions } from '../../../src/agent/cache/svid-issuer.js';
import type { AgentIdentity } from '../../../src/agent/client/agent-identity.js';
import { ServerConnection, type ServerConnectionOptions } from '../../../src/agent/client/server-connection.js';
import { unavailable } from '../../../src/common/errors.js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import type { Clock } from '../../../src/common/clock.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { silentLogger } from '../../../src/common/log.js';
import { exportPkcs8Pem, generateKeyPair } from '../../../src/common/x509/keys.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { DAY, type AgentFixture } from './agent-fixture.js';

/**
 * A stub meshid-server on loopback: the agent API's methods in `methods` only, under a server SVID from the fixture's
 * CA. Returns the agent's real client of it, trusting that CA.
 */
export async function stubServer(t: TestContext, fx: AgentFixture, methods: grpc.UntypedServiceImplementation): Promise<NodeClient> {
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto(AGENT_API_PROTO), 'meshid.agent.v1.Node'), methods);
  const serverKey = generateKeyPair('ec-p256');
  const serverSvid = fx.ca.signX509Svid({ datacenter: 'east', publicKey: serverKey.publicKey, spiffeId: 'spiffe://example.org/meshid/server', ttlMs: DAY });
  const credentials = grpc.ServerCredentials.createSsl(
    null,
    [{ private_key: Buffer.from(exportPkcs8Pem(serverKey.privateKey)), cert_chain: Buffer.from(certificatesToPem(serverSvid.chain)) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  t.after(() => server.forceShutdown());
  const client = new NodeClient({ serverAddress: `127.0.0.1:${port}`, log: silentLogger() });
  t.after(() => client.close());
  client.setTrust('example.org', fx.bundle().x509Authorities);
  return client;
}

/** A Sync stream of the stub server. */
export type SyncCall = grpc.ServerWritableStream<unknown, unknown>;

/**
 * A stub server's Sync method that keeps the streams the agent opens, in order, and answers those `answered` picks
 * (by index) at once with a first, empty change set; the others wait for the test to write or end them.
 */
export function recordedSync(answered: (index: number) => boolean = () => true): { streams: SyncCall[]; Sync: (call: SyncCall) => void } {
  const streams: SyncCall[] = [];
  return {
    streams,
    Sync: (call) => {
      streams.push(call);
      if (answered(streams.length - 1)) call.write({ revision: 1, initial: true });
    },
  };
}

/** What a ServerConnection asks of the agent identity (AgentIdentity), stubbed. */
export interface StubIdentity {
  current: () => { trustDomain: string; spiffeId?: string } | undefined;
  notAfter: () => number | undefined;
  expired: (now: number) => boolean;
  canReattest: () => boolean;
  attest: () => Promise<unknown>;
  stop: () => unknown;
  renewIfTainted: () => unknown;
  renewalInFlight: () => Promise<void> | undefined;
  discard?: () => unknown;
}

/**
 * A stub agent identity for startConnection: `current` as the case needs (undefined: no SVID yet), and otherwise an
 * SVID with no notAfter that is not expired, no join token to attest again with, nothing to renew; `stub` replaces any
 * of these.
 */
export function stubIdentity(stub: Partial<StubIdentity> & Pick<StubIdentity, 'current'>): StubIdentity {
  return {
    notAfter: () => undefined,
    expired: () => false,
    canReattest: () => false,
    attest: () => Promise.reject(new Error('this stub identity has no join token to attest with')),
    stop: () => undefined,
    renewIfTainted: () => undefined,
    renewalInFlight: () => undefined,
    ...stub,
  };
}

/**
 * The agent's connection to a stub server, with an issuer that signs nothing unless `options.issuer` gives it a signer;
 * `identity` is what the test's case needs of it, `options` what else differs (a cache holding no bundle yet, a clock
 * whose timers misbehave, the issuer or its signer, bootstrap roots and their probe, the withdrawal callback).
 */
export function startConnection(
  t: TestContext,
  fx: AgentFixture,
  client: NodeClient,
  identity: object,
  options: { cache?: IdentityCache; clock?: Clock; issuer?: SvidIssuer | Partial<Pick<SvidIssuerOptions, 'sign' | 'random'>> } & Partial<
    Pick<ServerConnectionOptions, 'bootstrapRoots' | 'checkBootstrapTrust' | 'onWithdrawn'>
  > = {},
): ServerConnection {
  const { cache = fx.cache(), clock = fx.clock, issuer: issuerOptions = {}, ...rest } = options;
  const issuer =
    issuerOptions instanceof SvidIssuer
      ? issuerOptions
      : new SvidIssuer({ cache, sign: () => Promise.reject(unavailable('no signing here')), clock, log: silentLogger(), ...issuerOptions });
  t.after(() => issuer.stop());
  const connection = new ServerConnection({
    client,
    identity: identity as unknown as AgentIdentity,
    cache,
    issuer,
    clock,
    log: silentLogger(),
    bootstrapRoots: undefined,
    revision: 0,
    onFatal: () => undefined,
    random: () => 0.5,
    ...rest,
  });
  connection.start();
  t.after(() => connection.stop());
  return connection;
}

