import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { toServiceError } from '../../common/grpc-status.js';
import { MeshidError } from '../../common/errors.js';
import { systemClock, type Clock } from '../../common/clock.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { refusalDetail } from './refusal-detail.js';

/**
 * Whether a failure is the server's own rather than a refusal of what the caller asked: anything that is not a
 * MeshidError (a bug), and a MeshidError marked serverFault (coded internal, or a datastore whose disk is full or
 * that cannot write, whose callers get RESOURCE_EXHAUSTED or UNAVAILABLE so that they retry). The caller can do
 * nothing about it; the operator can, so it is logged at error level with its cause, not at debug with the refusals a
 * client can repeat at will.
 */
export function isServerFault(err: unknown): boolean {
  return !(err instanceof MeshidError) || err.serverFault;
}

/** How long repeats of one server fault are counted rather than logged. */
export const SERVER_FAULT_LOG_WINDOW_MS = 60_000;

/** How much of a fault's message keys its throttle: a message embedding varying text still lands on few keys. */
const FAULT_KEY_REASON_CHARS = 200;

/**
 * The clock the server-fault log is throttled by. Module-level rather than a parameter of unary(): unary is called
 * once per RPC in every service, most of which take no clock, and the window is a minute of the host's time in
 * production; tests swap in a FakeClock with setServerFaultLogClock.
 */
let faultLogClock: Clock = systemClock;
const currentClock: Clock = { now: () => faultLogClock.now(), setTimer: (fn, ms) => faultLogClock.setTimer(fn, ms) };

/** For tests: the clock the server-fault throttle reads; returns a function that puts the previous one back. */
export function setServerFaultLogClock(clock: Clock): () => void {
  const previous = faultLogClock;
  faultLogClock = clock;
  return () => void (faultLogClock = previous);
}

/** One throttle per logger: per API listener of a server, so two servers in one process (tests) do not share one. */
const faultThrottles = new WeakMap<Logger, LogThrottle>();

function faultThrottle(log: Logger): LogThrottle {
  let t = faultThrottles.get(log);
  if (t === undefined) {
    t = new LogThrottle(currentClock, SERVER_FAULT_LOG_WINDOW_MS, {
      onWindowEnd: (key, repeats) => {
        const cut = key.indexOf('\n');
        log.error({ rpc: key.slice(0, cut), reason: key.slice(cut + 1), repeats }, `request failed, and ${repeats} more like it in the last minute`);
      },
    });
    faultThrottles.set(log, t);
  }
  return t;
}

/**
 * For the owner of `log` (the server, at its stop): the repeats of the minute under way are reported now, and no
 * summary comes after the server said it stopped.
 */
export function stopServerFaultLog(log: Logger): void {
  faultThrottles.get(log)?.stop();
}

/**
 * A server fault at error level with its cause, once per RPC and reason a minute: during a full disk thousands of
 * agents retry, and each would otherwise add the same line. Repeats are counted and reported when the window ends.
 * `context` (the agent and entry of a failed batch item, say) goes into the lines logged, never into the key: a fault
 * hitting every entry of a batch is still one line a minute.
 */
export function logServerFault(log: Logger, method: string, err: unknown, context: Record<string, unknown> = {}): void {
  const reason = (err instanceof Error ? err.message : String(err)).slice(0, FAULT_KEY_REASON_CHARS);
  const admitted = faultThrottle(log).admit(`${method}\n${reason}`);
  if (admitted === undefined) return;
  if (admitted.suppressedSinceLast !== undefined) {
    log.error({ rpc: method, ...context, err, repeats: admitted.suppressedSinceLast }, `request failed, after ${admitted.suppressedSinceLast} more like it in the last minute`);
  } else {
    log.error({ rpc: method, ...context, err }, 'request failed');
  }
}

/**
 * Adapts an async function to a grpc-js unary handler: its result is the response, anything it throws goes through
 * the one error mapping. Server faults (isServerFault) are logged with their cause, throttled (logServerFault);
 * refusals at debug level, with their cause's words masked (refusal-detail.ts).
 */
export function unary<Req, Res>(
  log: Logger,
  method: string,
  fn: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (res) => callback(null, res),
        (err: unknown) => {
          if (isServerFault(err)) logServerFault(log, method, err);
          else if (err instanceof MeshidError) {
            const detail = refusalDetail(err);
            log.debug({ rpc: method, code: err.code, reason: err.message, ...(detail !== undefined && { detail }) }, 'request refused');
          }
          callback(toServiceError(err));
        },
      );
  };
}
