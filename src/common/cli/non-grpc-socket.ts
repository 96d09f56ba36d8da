import net from 'node:net';
import type { ServiceError } from '@grpc/grpc-js';
import { failedPrecondition, unavailable, type MeshidError } from '../errors.js';
import { formatDuration } from '../duration.js';
import { connectionFailure, deadlineBeforeConnection } from '../grpc/call-failure.js';
import type { ExpectedDaemon } from './wrong-daemon.js';

/**
 * What a socket's listener did with an HTTP/2 connection preface: `http2`, a SETTINGS frame back (a gRPC server, or
 * some other HTTP/2 one); `http1`, an HTTP/1 status line; `other`, bytes of anything else (`said`, printable and
 * cut short); `closed`, the connection closed or reset without a byte; `silent`, nothing within the wait;
 * `unreachable`, no connection at all (left to socket-problem.ts to explain).
 */
export type SocketAnswer =
  | { kind: 'http2' | 'http1' | 'closed' | 'silent' | 'unreachable' }
  | { kind: 'other'; said: string };

/** What an HTTP/2 client sends first (RFC 9113 §3.4): the preface, then its SETTINGS frame (empty here). */
const CLIENT_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
const FRAME_HEADER_BYTES = 9;
const SETTINGS_FRAME = 4;
const QUOTED_BYTES = 24;

/** How long a listener may take to answer the preface: a gRPC server answers at once. */
const PROBE_WAIT_MS = 1000;

/**
 * The same wait for a call whose deadline has passed: the command is out of the time the operator gave it, so it may
 * only take a moment more; a gRPC server still answers the preface within it, a busy one might not, and is then
 * named for what it is (hung or overloaded) with the flag that gives it longer.
 */
const PROBE_WAIT_PAST_DEADLINE_MS = 200;

/**
 * Connects to `socketPath` once, sends the HTTP/2 preface and classifies the answer. Only ever run after a call
 * failed without reaching a gRPC server, never on the way to a call. `signal` ends it at once (answered `silent`,
 * for nobody to read), so a probe whose call has ended does not keep the process alive.
 */
export function probeSocket(socketPath: string, signal?: AbortSignal, waitMs = PROBE_WAIT_MS): Promise<SocketAnswer> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    let connected = false;
    const socket = net.createConnection(socketPath);
    const onAbort = (): void => finish({ kind: 'silent' });
    const finish = (answer: SocketAnswer): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(answer);
    };
    const judge = (): SocketAnswer => {
      if (received.length === 0) return { kind: 'closed' };
      if (received.length >= FRAME_HEADER_BYTES && received[3] === SETTINGS_FRAME) return { kind: 'http2' };
      if (received.subarray(0, 7).toString('latin1') === 'HTTP/1.') return { kind: 'http1' };
      return { kind: 'other', said: printable(received) };
    };
    const timer = setTimeout(() => finish(received.length === 0 ? { kind: 'silent' } : judge()), waitMs);
    socket.on('connect', () => {
      connected = true;
      socket.write(CLIENT_PREFACE);
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= FRAME_HEADER_BYTES) finish(judge());
    });
    socket.on('end', () => finish(judge()));
    socket.on('error', () => finish(connected ? judge() : { kind: 'unreachable' }));
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort);
  });
}

/** A call's deadline as the operator set it: `flag` (e.g. "--timeout") when one did, to be named as the way to wait longer. */
export interface CallDeadline {
  readonly ms: number;
  readonly flag?: string;
}

/**
 * The error for a call that failed with `err` before it ever got a gRPC connection on `socketPath` (never connected,
 * or its deadline passed waiting for one) when something there accepts connections but does not speak gRPC: another
 * program's socket, given by mistake. grpc-js reports that as "Failed to connect" or "Protocol error", and the CLI as
 * "cannot reach … is it running?", which sends the operator to restart a daemon when the flag is what is wrong.
 * Undefined, without probing, for any other failure; undefined too when the probe finds no listener, or one that
 * speaks HTTP/2: then the call's own error says what happened.
 *
 * Only bytes that are not HTTP/2 prove a foreign program. A listener that hangs up without a word or never answers
 * may be the daemon itself (shutting down, closing a connection it will not serve, hung or overloaded past the
 * call's deadline: the kernel accepts connections for a process that does not run): those are UNAVAILABLE naming
 * either, not FAILED_PRECONDITION naming a wrong socket.
 *
 * A call out of time gets a short probe (PROBE_WAIT_PAST_DEADLINE_MS), not one that would run the command a second
 * past the `deadline` the operator set, and a listener silent in it is named with that deadline and its flag.
 */
export async function notSpeakingGrpc(
  socketPath: string,
  expected: ExpectedDaemon,
  err: Pick<ServiceError, 'code' | 'details'>,
  deadline: CallDeadline,
): Promise<MeshidError | undefined> {
  const outOfTime = deadlineBeforeConnection(err);
  if (connectionFailure(err) !== 'not-connected' && !outOfTime) return undefined;
  const answer = await probeSocket(socketPath, undefined, outOfTime ? PROBE_WAIT_PAST_DEADLINE_MS : PROBE_WAIT_MS);
  const fix = `check ${expected.flags}`;
  switch (answer.kind) {
    case 'http1':
    case 'other':
      return foreignListener(socketPath, expected, answer, err);
    case 'closed': {
      const refusing = expected.closesOn === undefined ? 'shutting down' : `shutting down or refusing ${expected.closesOn}; see its log`;
      return unavailable(
        `what listens on ${socketPath} closes the connection without a word: a ${expected.daemon} ${refusing}, or a program that does not speak gRPC (${fix})`,
        err,
      );
    }
    case 'silent':
      if (outOfTime) {
        return unavailable(
          `what listens on ${socketPath} accepts the connection but did not answer within the timeout (${formatDuration(deadline.ms)}): ` +
            `a ${expected.daemon} that is hung or overloaded, or a program that does not speak gRPC (${fix})` +
            (deadline.flag !== undefined ? `. A longer ${deadline.flag} gives it more time` : ''),
          err,
        );
      }
      return unavailable(
        `what listens on ${socketPath} accepts the connection but never answers: a ${expected.daemon} that is hung or overloaded, or a program that does not speak gRPC (${fix})`,
        err,
      );
    default:
      return undefined;
  }
}

/**
 * The FAILED_PRECONDITION for a listener whose answer to the preface proves it another program (HTTP/1, or bytes of
 * anything else); undefined for any other answer.
 */
export function foreignListener(socketPath: string, expected: ExpectedDaemon, answer: SocketAnswer, cause?: unknown): MeshidError | undefined {
  const fix = `check ${expected.flags}`;
  if (answer.kind === 'http1') {
    return failedPrecondition(`nothing speaking gRPC listens on ${socketPath} (it answers HTTP/1), so it is not a ${expected.socket}: ${fix}`, cause);
  }
  if (answer.kind === 'other') {
    return failedPrecondition(`nothing speaking gRPC listens on ${socketPath} (it answers ${JSON.stringify(answer.said)}), so it is not a ${expected.socket}: ${fix}`, cause);
  }
  return undefined;
}

/** The first bytes a foreign listener sent, as text an error line can quote: control characters dropped, cut short. */
function printable(bytes: Buffer): string {
  const text = bytes.subarray(0, QUOTED_BYTES).toString('latin1').replace(/[^\x20-\x7e]+/g, ' ').trim();
  return bytes.length > QUOTED_BYTES ? `${text}…` : text;
}
