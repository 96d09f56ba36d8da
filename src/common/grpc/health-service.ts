import type { ServerWritableStream, UntypedServiceImplementation, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../clock.js';
import { notFound, unavailable } from '../errors.js';
import { toServiceError } from '../grpc-status.js';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/**
 * How often open Watch streams have the status evaluated again. Part of what decides it is time (an agent SVID
 * expiring) and part is scattered state, so a change is noticed by looking again rather than by an event from each
 * source; one look a second for every watcher together costs nothing, and probes act on a period of seconds.
 */
export const WATCH_RECHECK_MS = 1000;

export interface HealthServiceOptions {
  /** The named services the status applies to; any other name but "" is unknown. */
  readonly services: readonly string[];
  /** Whether the server can do its job now: SERVING or NOT_SERVING, for "" and every name in `services` alike. */
  readonly serving: () => boolean | Promise<boolean>;
  readonly clock: Clock;
  /** The daemon, as the message that ends Watch streams at shutdown names it ("meshid-agent"). */
  readonly daemon: string;
  /**
   * How long one answer of `serving` is reused by every Check and Watch, in ms; 0 (the default): each asks again. For a
   * port anyone can reach, where `serving` does real work (a datastore read): however many calls are made, it runs
   * once per period at most.
   */
  readonly reuseMs?: number;
}

interface Watcher {
  readonly call: ServerWritableStream<{ service?: string }, unknown>;
  readonly service: string;
  last: ServingStatus;
}

/**
 * The standard gRPC health service (grpc.health.v1.Health, health.proto's contract). Check answers the status, or
 * NOT_FOUND for an unknown service. Watch sends the status at once (SERVICE_UNKNOWN for an unknown service, the
 * stream kept open), then a message whenever it changes. shutdown() is the first step of a daemon's stop: from then on
 * everything is NOT_SERVING, and open Watch streams are told so and ended UNAVAILABLE (the client reconnects elsewhere
 * or later) instead of holding up the gRPC server's shutdown until it cuts them.
 */
export class GrpcHealthService {
  readonly implementation: UntypedServiceImplementation;
  private readonly watchers = new Set<Watcher>();
  private timer: TimerHandle | undefined;
  private stopped = false;
  /** The last answer of `serving` and when it was asked for (reuseMs). */
  private reused: { at: number; status: Promise<ServingStatus> } | undefined;

  constructor(private readonly o: HealthServiceOptions) {
    this.implementation = {
      Check: (call: ServerUnaryCall<{ service?: string }, unknown>, callback: sendUnaryData<unknown>) => {
        const service = call.request.service ?? '';
        this.statusOf(service).then(
          (s) => {
            // Through the one mapping: it bounds the name quoted, which comes from the caller.
            if (s === 'SERVICE_UNKNOWN') callback(toServiceError(notFound(`unknown service "${service}"`)));
            else callback(null, { status: s });
          },
          (err: unknown) => callback(toServiceError(err)),
        );
      },
      Watch: (call: ServerWritableStream<{ service?: string }, unknown>) => this.watch(call),
    };
  }

  /** Everything NOT_SERVING from now on; open Watch streams get NOT_SERVING and end. */
  shutdown(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    for (const w of [...this.watchers]) this.end(w);
  }

  private known(service: string): boolean {
    return service === '' || this.o.services.includes(service);
  }

  private async statusOf(service: string): Promise<ServingStatus> {
    return this.known(service) ? this.serving() : 'SERVICE_UNKNOWN';
  }

  private async serving(): Promise<ServingStatus> {
    if (this.stopped) return 'NOT_SERVING';
    const reuseMs = this.o.reuseMs ?? 0;
    if (reuseMs <= 0) return this.evaluate();
    const now = this.o.clock.now();
    // A clock set back is not a reason to keep an answer longer.
    if (this.reused !== undefined && now >= this.reused.at && now - this.reused.at < reuseMs) return this.reused.status;
    this.reused = { at: now, status: this.evaluate() };
    return this.reused.status;
  }

  private async evaluate(): Promise<ServingStatus> {
    try {
      return (await this.o.serving()) ? 'SERVING' : 'NOT_SERVING';
    } catch {
      // A check that cannot be made is not a daemon that serves.
      return 'NOT_SERVING';
    }
  }

  private watch(call: ServerWritableStream<{ service?: string }, unknown>): void {
    // Cancelled before it got here (its 'cancelled' event is past): kept, it would be looked at every second for ever.
    if (call.cancelled) return;
    const watcher: Watcher = { call, service: call.request.service ?? '', last: 'SERVICE_UNKNOWN' };
    if (this.stopped) {
      this.end(watcher);
      return;
    }
    this.watchers.add(watcher);
    call.on('cancelled', () => this.watchers.delete(watcher));
    void this.statusOf(watcher.service).then((s) => {
      if (!this.watchers.has(watcher)) return;
      watcher.last = s;
      call.write({ status: s });
      this.arm();
    });
  }

  private arm(): void {
    if (this.timer !== undefined || this.stopped || this.watchers.size === 0) return;
    this.timer = this.o.clock.setTimer(() => {
      this.timer = undefined;
      void this.recheck().then(() => this.arm());
    }, WATCH_RECHECK_MS);
  }

  private async recheck(): Promise<void> {
    const serving = await this.serving();
    for (const w of [...this.watchers]) {
      const s = this.known(w.service) ? serving : 'SERVICE_UNKNOWN';
      if (!this.watchers.has(w) || s === w.last) continue;
      w.last = s;
      w.call.write({ status: s });
    }
  }

  private end(w: Watcher): void {
    this.watchers.delete(w);
    if (w.call.cancelled) return;
    if (this.known(w.service) && w.last !== 'NOT_SERVING') w.call.write({ status: 'NOT_SERVING' });
    w.call.emit('error', toServiceError(unavailable(`${this.o.daemon} is shutting down`)));
  }
}
