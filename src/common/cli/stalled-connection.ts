import { connectivityState, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import type { MeshidError } from '../errors.js';
import { foreignListener, probeSocket } from './non-grpc-socket.js';
import type { ExpectedDaemon } from './wrong-daemon.js';

/**
 * How long a call may wait for its connection before the socket is asked what listens there. A gRPC server answers
 * the HTTP/2 preface at once; a daemon busy enough to take longer still gets its full deadline (the probe only ends
 * the call on proof of another program).
 */
export const CONNECT_GRACE_MS = 2000;

/** What the watch reads of a call's channel (grpc-js Channel). */
export interface WatchedChannel {
  getConnectivityState(tryToConnect: boolean): connectivityState;
}

export interface StalledConnectionWatch {
  /** Rejects with the error to report once the listener is found to be another program; never settles otherwise. */
  readonly foreign: Promise<never>;
  /** Stops watching (the call ended); a probe under way is ended, so it does not hold the process past the call. */
  stop(): void;
}

/**
 * Watches a CLI call's channel while it waits for a connection. grpc-js takes a connection as ready only once the
 * server's SETTINGS frame arrives: a listener that sends a few bytes that are not HTTP/2 (fewer than a frame header,
 * so no protocol error is raised) and keeps the connection open stalls the call until its deadline (30 s for the
 * admin CLI), to end as "not a gRPC server" only then. A channel still not ready after CONNECT_GRACE_MS is probed
 * (probeSocket, one connection of its own), and a listener proven foreign ends the call at once with the same error
 * it would end with at its deadline. Silence or a hang-up may be the daemon itself (hung, overloaded, stopping):
 * those keep waiting, as before.
 */
export function watchForStalledConnection(
  channel: WatchedChannel,
  socketPath: string,
  expected: ExpectedDaemon,
): StalledConnectionWatch {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const probing = new AbortController();
  const foreign = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      if (channel.getConnectivityState(false) === connectivityState.READY) return;
      void probeSocket(socketPath, probing.signal).then((answer) => {
        const err: MeshidError | undefined = foreignListener(socketPath, expected, answer);
        if (!stopped && err !== undefined) reject(err);
      });
    }, CONNECT_GRACE_MS);
    // The call's own deadline keeps the process alive; this timer must not outlive it.
    timer.unref();
  });
  // Never awaited once the call has ended: a rejection then is nobody's to handle.
  foreign.catch(() => {});
  return {
    foreign,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      probing.abort();
    },
  };
}

/**
 * A unary call `start` makes, answered or ended by `watch` finding another program at the socket; the call, then still
 * waiting for its connection, is cancelled. `translate` words the call's own errors.
 */
export async function watchedUnaryCall<T>(
  watch: StalledConnectionWatch,
  start: (callback: (err: ServiceError | null, res?: unknown) => void) => ClientUnaryCall,
  translate: (err: ServiceError) => Promise<Error>,
): Promise<T> {
  let call: ClientUnaryCall | undefined;
  const answered = new Promise<T>((resolve, reject) => {
    call = start((err, res) => {
      // A translation that fails itself still ends the call, with its own error, rather than leaving it waiting.
      if (err) translate(err).then(reject, reject);
      else resolve(res as T);
    });
  });
  try {
    return await Promise.race([answered, watch.foreign]);
  } catch (err) {
    call?.cancel();
    throw err;
  } finally {
    watch.stop();
  }
}
