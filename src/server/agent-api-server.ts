import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { loadProto } from '../common/grpc/proto.js';
import { serviceOf } from '../common/grpc/service.js';
import { GrpcHealthService, WATCH_RECHECK_MS } from '../common/grpc/health-service.js';
import { MemoryCertificateProvider } from '../common/grpc/certificate-provider.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../common/grpc/server-options.js';
import { RateLimiter } from '../common/rate-limiter.js';
import { listenFailure } from '../common/listen-failure.js';
import { certificatesToPem } from '../common/x509/pem.js';
import type { ServerConfig } from './config.js';
import type { Datastore } from './datastore/datastore.js';
import type { CaManager } from './ca/ca-manager.js';
import type { ServerSvid } from './server-svid.js';
import { forceShutdownGrpcServer } from './grpc-shutdown.js';
import type { SyncHub } from './api/sync-hub.js';
import { SigningLimits } from './api/signing-limits.js';
import { nodeService } from './api/node-service.js';
import { withSyncEntryEncoding } from './api/sync-entry-encoding.js';
import { agentIdPrefix } from './api/node-context.js';
import { agentCallGate } from './api/agent-call-gate.js';
import { AgentCallBudgets } from './api/agent-call-budgets.js';
import { AgentSvidAnchor } from './api/agent-svid-anchor.js';
import { PresentedCertificates } from './api/presented-certificates.js';
import { RefusedClientCertificates } from './api/refused-client-certificates.js';
import { AgentApiConnections, type ConnectionLimits } from './api/agent-api-connections.js';
import { AGENT_API_SERVER_OPTIONS, AGENT_PROTO } from './api/agent-api-options.js';
import type { GrpcHealthServing } from './grpc-health-serving.js';

/**
 * The agent API's listener: meshid.agent.v1.Node over mTLS (the CA's anchors and the server's SVID, both followed as
 * they change), behind the call gate and signing limits, with grpc.health.v1, and its connections bounded from the
 * first handshake.
 */
export async function startAgentApi(
  config: ServerConfig, ds: Datastore, ca: CaManager, hub: SyncHub, svid: ServerSvid, clock: Clock, log: Logger, grpcHealth: GrpcHealthServing,
  connectionLimits?: Partial<ConnectionLimits>,
): Promise<{ server: grpc.Server; port: number; connections: AgentApiConnections }> {
  const proto = loadProto(AGENT_PROTO);
  const provider = new MemoryCertificateProvider();
  // Not the bundle as published: a revoked root's anchor that a restart published again is left out (revoked-roots.ts).
  const applyBundle = (): void => provider.setCa(certificatesToPem(ca.agentApiTrustAnchors()));
  applyBundle();
  // After every journal change: a root taken on can need an anchor left out so far with the bundle unchanged.
  ca.onChange(applyBundle);
  const id = svid.identity();
  provider.setIdentity(id.certChainPem, id.privateKeyPem);
  svid.onChange((next) => provider.setIdentity(next.certChainPem, next.privateKeyPem));
  // Client certificates are requested but not required at the TLS layer: Attest runs before the agent has an SVID.
  // Every other call checks the verified certificate itself (agent-auth.ts).
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
  const anchor = new AgentSvidAnchor(ca);
  const budgets = new AgentCallBudgets(config.agentSvidTtlMs, clock);
  const certificates = new PresentedCertificates();
  const refused = new RefusedClientCertificates({ agentIdPrefix: agentIdPrefix(config.trustDomain), anchor, clock });
  const gate = agentCallGate({ agentIdPrefix: agentIdPrefix(config.trustDomain), anchor, budgets, certificates, refused, agents: ds, clock });
  const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, ...AGENT_API_SERVER_OPTIONS, interceptors: [...BASE_INTERCEPTORS, gate] });
  const limiter = new SigningLimits(
    new RateLimiter(config.agentSignRate, config.agentSignBurst, clock),
    new RateLimiter(config.globalSignRate, config.globalSignBurst, clock),
  );
  server.addService(
    withSyncEntryEncoding(serviceOf(proto, 'meshid.agent.v1.Node')),
    nodeService({
      trustDomain: config.trustDomain,
      datacenters: config.datacenters,
      agentSvidTtlMs: config.agentSvidTtlMs,
      ttls: {
        defaultX509SvidTtlMs: config.x509SvidTtlMs,
        maxX509SvidTtlMs: config.maxX509SvidTtlMs,
        defaultJwtSvidTtlMs: config.jwtSvidTtlMs,
        maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
      },
      ds,
      ca,
      hub,
      limiter,
      budgets,
      anchor,
      certificates,
      clock,
      log,
    }),
  );
  // Anyone who reaches the port may ask, without a certificate: its answer (a datastore read) is made once a second at
  // most, however many Checks and Watches come.
  const health = new GrpcHealthService({ services: ['meshid.agent.v1.Node'], serving: grpcHealth.agentApi, clock, daemon: 'meshid-server', reuseMs: WATCH_RECHECK_MS });
  grpcHealth.services.push(health);
  server.addService(serviceOf(proto, 'grpc.health.v1.Health'), health.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(config.bindAddress, credentials, (err, p) => (err ? reject(listenFailure(err, config.bindAddress, '--bind-address, bind_address')) : resolve(p))),
  );
  const connections = new AgentApiConnections({ agentIdPrefix: agentIdPrefix(config.trustDomain), anchor, certificates, refused, clock, log, limits: connectionLimits });
  try {
    // Before any connection has finished its TLS handshake: none goes unbounded.
    connections.watch(server);
  } catch (err) {
    forceShutdownGrpcServer(server);
    throw err;
  }
  return { server, port, connections };
}
