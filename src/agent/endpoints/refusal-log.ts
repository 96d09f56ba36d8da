import type { Clock } from '../../common/clock.js';
import { isMeshidError, MeshidError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { formatSelector, type Selector } from '../../common/spiffe/selector.js';
import type { PeerCred } from '../attestor/peer-credentials.js';

/**
 * A workload caller as the agent's log lines name it: the ids the kernel reported for the connection. Its pid is
 * `callerPid`, since pino's `pid` on every line is the agent's own (a second `pid` key would make the line ambiguous
 * JSON, read differently by different tools).
 */
export interface CallerFields {
  readonly callerPid: number;
  readonly uid: number;
  readonly gid: number;
}

export function callerFields(peer: PeerCred): CallerFields {
  return { callerPid: peer.pid, uid: peer.uid, gid: peer.gid };
}

/** The caller of a call on the agent socket, undefined for a connection the socket server did not record. */
export type CallerOf = (call: { getPeer(): string }) => CallerFields | undefined;

/**
 * PERMISSION_DENIED for an attested caller no registration entry matches (or not the one it asked for). The selectors
 * it was attested with go to the refusal's log line (RefusalLog), never to the caller.
 */
export function noIdentityFor(selectors: readonly Selector[], message: string): MeshidError {
  return new MeshidError('permission_denied', message, { data: { selectors: selectors.map(formatSelector) } });
}

/**
 * The one wording of "not synced" (IdentityCache.synced() false): after a start on state restored from the data dir,
 * and after an attestation under a new agent ID, whose entries held are the old identity's until the new one's first
 * Sync answer (ServerConnection). The agent may well have synced since it started, as the identity it gave up.
 */
const NOT_SYNCED = 'the agent has not synced with meshid-server since it started or attested again';

/**
 * UNAVAILABLE for a refusal the agent cannot make final while it has not synced (its state may predate the caller's
 * entry): `reason` says what its state lacks. With the caller's selectors, as noIdentityFor, so the log line can be
 * compared with the entries; with `cause`, the refusal a synced agent would have made.
 */
export function notSynced(reason: string, options: { selectors?: readonly Selector[]; cause?: unknown } = {}): MeshidError {
  const { selectors, cause } = options;
  return new MeshidError('unavailable', `${NOT_SYNCED}: ${reason}; retry`, { cause, data: selectors && { selectors: selectors.map(formatSelector) } });
}

/** notSynced for a caller no entry the agent holds matches. */
export function notSyncedFor(selectors: readonly Selector[]): MeshidError {
  return notSynced('no entry it holds matches the caller', { selectors });
}

/**
 * The log of refused Workload API and SDS calls. An operator asking why a workload got PERMISSION_DENIED finds the
 * caller's pid, uid and gid and the selectors it was attested with, to compare with `meshid-server entry show`
 * (as SPIRE's "No identity issued" names the caller's pid). A refusal with no identity to hand out is a warning: a
 * workload wanted one and has none. Each rpc, code and uid gets one line a minute (LogThrottle): the uid is the
 * kernel's, so a client retrying in a tight loop costs a line a minute, while another workload's refusal is not
 * hidden behind it.
 */
export class RefusalLog {
  private readonly throttle: LogThrottle;

  /** `service` names the API in the lines: "Workload API", "SDS". */
  constructor(
    private readonly log: Logger,
    clock: Clock,
    private readonly service: string,
    private readonly callerOf: CallerOf = () => undefined,
  ) {
    this.throttle = new LogThrottle(clock);
  }

  /** Logs the refusal of `call` with `error` (a MeshidError is the caller's answer; anything else a failure). */
  refused(rpc: string, error: unknown, call: { getPeer(): string }): void {
    const caller = this.callerOf(call);
    if (!isMeshidError(error) || error.code === 'internal') {
      this.log.error({ rpc, ...caller, err: error }, `${this.service} call failed`);
      return;
    }
    const admitted = this.throttle.admit(`${rpc}\n${error.code}\n${caller?.uid ?? ''}`);
    if (admitted === undefined) return;
    const selectors = error.data?.['selectors'];
    // The cause is what an operator acts on ("could not read /proc/<pid>/status": EACCES, or ENOENT as the caller
    // exited); under `err` so pino's error serializer writes its message, code and stack, which JSON would drop.
    const cause = error.cause;
    const fields = {
      rpc,
      ...caller,
      code: error.code,
      reason: error.message,
      ...(selectors !== undefined && { selectors }),
      ...(cause !== undefined && { err: cause }),
      ...admitted,
    };
    if (error.code === 'permission_denied') this.log.warn(fields, `${this.service} call refused: no identity issued to the caller; compare its selectors with the entries (meshid-server entry show)`);
    else this.log.info(fields, `${this.service} call refused`);
  }
}
