import type { GrpcHealthService } from '../common/grpc/health-service.js';
import type { Logger } from '../common/log.js';
import type { Datastore } from './datastore/datastore.js';
import type { StartingServerProbe } from './server-health.js';

/** What grpc.health.v1 answers on the admin socket and the agent API, and the services made, for stop(). */
export interface GrpcHealthServing {
  readonly admin: () => Promise<boolean>;
  readonly agentApi: () => Promise<boolean>;
  readonly services: GrpcHealthService[];
}

/**
 * What `meshid-server healthcheck` asks on the admin socket is SPIRE's question: can the datastore be read. A load
 * balancer's gRPC check of the agent API asks readiness (datastore and CA; NOT_SERVING until it listens). The gRPC
 * answer carries no reason: the log has it, once per failure rather than per probe.
 */
export function grpcHealthServing(ds: Datastore, starting: StartingServerProbe, log: Logger): GrpcHealthServing {
  let datastoreUnreadable = false;
  const grpcHealth = {
    admin: async (): Promise<boolean> => {
      try {
        await ds.currentRevision();
        datastoreUnreadable = false;
        return true;
      } catch (err) {
        if (!datastoreUnreadable) log.warn({ err }, 'the datastore cannot be read: grpc.health.v1 on the admin socket (meshid-server healthcheck) answers NOT_SERVING');
        datastoreUnreadable = true;
        return false;
      }
    },
    agentApi: async (): Promise<boolean> => (await starting.ready()).ok,
    services: [] as GrpcHealthService[],
  };
  return grpcHealth;
}
