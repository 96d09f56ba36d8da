import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { ensurePrivateDir } from '../common/atomic-file.js';
import { loadProto } from '../common/grpc/proto.js';
import { serviceOf } from '../common/grpc/service.js';
import { GrpcHealthService } from '../common/grpc/health-service.js';
import { BASE_SERVER_OPTIONS } from '../common/grpc/server-options.js';
import { removeStaleSocket } from '../common/socket-file.js';
import type { ServerConfig } from './config.js';
import type { Datastore } from './datastore/datastore.js';
import type { CaManager } from './ca/ca-manager.js';
import type { FederatedBundlePoller } from './federation/bundle-poller.js';
import { entryService } from './api/entry-service.js';
import { tokenService } from './api/token-service.js';
import { bundleService } from './api/bundle-service.js';
import { agentAdminService } from './api/agent-admin-service.js';
import { authorityService } from './api/authority-service.js';
import { svidService } from './api/svid-service.js';
import { federationService } from './api/federation-service.js';
import { loggerService } from './api/logger-service.js';
import type { GrpcHealthServing } from './grpc-health-serving.js';

export const ADMIN_PROTO = ['meshid/v1/admin.proto', 'grpc/health/v1/health.proto'];

/** The settings that name the admin socket, as its refusals name them. */
export const ADMIN_SOCKET_SETTING = '--admin-socket, admin_socket';

/**
 * The admin API on its Unix socket (0600, in a directory only the server's user can enter): every meshid.admin.v1
 * service over the datastore, the CA and the federation poller, and grpc.health.v1 with a status per service.
 */
export async function startAdminServer(
  config: ServerConfig, ds: Datastore, ca: CaManager, federation: FederatedBundlePoller, backups: grpc.UntypedServiceImplementation, clock: Clock, log: Logger,
  grpcHealth: GrpcHealthServing, rootLog: Logger,
): Promise<grpc.Server> {
  const proto = loadProto(ADMIN_PROTO);
  const limits = {
    trustDomain: config.trustDomain,
    datacenters: config.datacenters,
    defaultX509SvidTtlMs: config.x509SvidTtlMs,
    maxX509SvidTtlMs: config.maxX509SvidTtlMs,
    defaultJwtSvidTtlMs: config.jwtSvidTtlMs,
    maxJwtSvidTtlMs: config.maxJwtSvidTtlMs,
  };
  const server = new grpc.Server(BASE_SERVER_OPTIONS);
  const services: Array<[string, grpc.UntypedServiceImplementation]> = [
    ['meshid.admin.v1.Entries', entryService(ds, limits, log, new Set(config.federatesWith.map((r) => r.trustDomain)))],
    ['meshid.admin.v1.Tokens', tokenService(ds, { datacenters: config.datacenters, defaultTtlMs: config.joinTokenTtlMs }, clock, log)],
    ['meshid.admin.v1.Bundles', bundleService(ds, ca, federation, clock, log)],
    ['meshid.admin.v1.Agents', agentAdminService(ds, { datacenters: config.datacenters }, log)],
    [
      'meshid.admin.v1.Authorities',
      authorityService(
        ca, ds, clock, log,
        config.bundleEndpointAddress !== undefined && config.bundleEndpointWebCert === undefined ? config.bundleRefreshHintSeconds * 1000 : undefined,
      ),
    ],
    ['meshid.admin.v1.Svids', svidService(ca, limits, log)],
    ['meshid.admin.v1.Federation', federationService(federation, ds, config.trustDomain, clock, log)],
    ['meshid.admin.v1.Backups', backups],
    ['meshid.admin.v1.Logger', loggerService(rootLog, config.logLevel, log)],
  ];
  for (const [name, implementation] of services) server.addService(serviceOf(proto, name), implementation);
  // Each admin service has a health status of its own, so `meshid-server healthcheck` can tell this socket from any
  // other gRPC server's (an agent's answers "" as SERVING too); "" stays for generic probes.
  const health = new GrpcHealthService({ services: services.map(([name]) => name), serving: grpcHealth.admin, clock, daemon: 'meshid-server' });
  grpcHealth.services.push(health);
  server.addService(serviceOf(proto, 'grpc.health.v1.Health'), health.implementation);
  // The admin socket is the operator's door: keep it in a directory only the server's user can enter.
  const setting = ADMIN_SOCKET_SETTING;
  ensurePrivateDir(path.dirname(config.adminSocket), { purpose: 'admin socket directory', adoptExisting: false, setting });
  await removeStaleSocket(config.adminSocket, setting);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${config.adminSocket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  fs.chmodSync(config.adminSocket, 0o600);
  return server;
}
