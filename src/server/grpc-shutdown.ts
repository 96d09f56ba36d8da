import * as grpc from '@grpc/grpc-js';
import { serverSessions } from '../common/grpc/server-sessions.js';

/** How long calls in progress get to finish when a server stops, before their connections are cut. */
export const SHUTDOWN_GRACE_MS = 2000;

/**
 * Stops `server`: calls in progress get `graceMs` to finish, then every connection is cut (forceShutdownGrpcServer).
 * A transport grace period, not time logic: it runs on the system's timers whatever clock the server was given.
 */
export function shutdownGrpcServer(server: grpc.Server, graceMs = SHUTDOWN_GRACE_MS): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      forceShutdownGrpcServer(server);
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * grpc-js's forceShutdown, and the connections it leaves open cut too. forceShutdown destroys only the sessions it
 * records for channelz, which BASE_SERVER_OPTIONS turns off (grpc-js 1.14): the others stayed open (one an agent made
 * as the server began to stop, say), and a stopped server kept answering on them from its closed datastore, so the
 * agent never reconnected to the server started after it.
 */
export function forceShutdownGrpcServer(server: grpc.Server): void {
  server.forceShutdown();
  for (const session of serverSessions(server)) if (!session.destroyed) session.destroy();
}
