import { status, Metadata, type ServiceError } from '@grpc/grpc-js';
import { MeshidError, type ErrorCode } from './errors.js';

/** The one mapping from domain error codes to gRPC status codes. */
export const GRPC_CODE: Record<ErrorCode, status> = {
  invalid_argument: status.INVALID_ARGUMENT,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  permission_denied: status.PERMISSION_DENIED,
  failed_precondition: status.FAILED_PRECONDITION,
  aborted: status.ABORTED,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  unauthenticated: status.UNAUTHENTICATED,
  unimplemented: status.UNIMPLEMENTED,
  internal: status.INTERNAL,
};

const ERROR_CODE_BY_GRPC = new Map<number, ErrorCode>(
  Object.entries(GRPC_CODE).map(([k, v]) => [v, k as ErrorCode]),
);

/**
 * The trailer that says how long to wait before retrying (a MeshidError's retryAfterMs): gRFC A6's server pushback,
 * whose meaning is exactly that, rather than a name of meshid's own. A gRPC client acts on it only under a retry
 * policy (a service config) listing the call's status code; meshid's agent sets none (grpc-js then ignores the
 * trailer for a call the server processed), so it reads the value itself (budget-refusal.ts). A client that has one
 * retries after the server's wait instead of its own backoff, which the budget would refuse again.
 */
export const RETRY_PUSHBACK_KEY = 'grpc-retry-pushback-ms';

/**
 * The longest status message sent. It travels as the grpc-message trailer, percent-encoded (up to 9 bytes a
 * character: a 3-byte UTF-8 sequence as %XX%XX%XX), and Node's HTTP/2 refuses a header block over 64 KB: a longer
 * message, one quoting a huge value from a request say, would leave the caller with no status at all, only its
 * deadline, and the connection with it. 4,096 characters stay under 37 KB.
 */
export const MAX_STATUS_MESSAGE_CHARS = 4096;

/**
 * Of a message cut short, how much of its end is kept: the end is where a refusal says what to do ("…; give a
 * shorter one", "; retry in 3 s", which the agent reads), the start what was refused ("banned: …", "must re-attest:
 * …", which the agent reads too). A value quoted whole, the long part, sits between them.
 */
const KEPT_END_CHARS = 1024;

/** Half of a UTF-16 surrogate pair without its other half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The message as sent: at most MAX_STATUS_MESSAGE_CHARS, its middle left out when longer (KEPT_END_CHARS), never
 * between the two halves of a character outside the BMP, and any lone surrogate (a value quoted after a cut of its
 * own, or a "\ud800" escape in a token's JSON) replaced by U+FFFD. grpc-js percent-encodes the message with encodeURI,
 * which throws on a lone surrogate: the throw escapes the call, the caller gets no status, and the process dies of
 * the unhandled rejection.
 */
function bounded(message: string): string {
  let text = message;
  if (text.length > MAX_STATUS_MESSAGE_CHARS) {
    let tailStart = text.length - KEPT_END_CHARS;
    if (isLowSurrogate(text.charCodeAt(tailStart))) tailStart++;
    // Sized for the longest count it can name, so that the head's length does not depend on it.
    const markerChars = ` … (${text.length} characters left out) … `.length;
    let headEnd = MAX_STATUS_MESSAGE_CHARS - KEPT_END_CHARS - markerChars;
    if (isHighSurrogate(text.charCodeAt(headEnd - 1))) headEnd--;
    text = `${text.slice(0, headEnd)} … (${tailStart - headEnd} characters left out) … ${text.slice(tailStart)}`;
  }
  return text.replace(LONE_SURROGATE, '\uFFFD');
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/**
 * Turns anything thrown into a gRPC ServiceError. A MeshidError keeps its code and message, and its retryAfterMs
 * goes along as retry pushback; anything else becomes INTERNAL with a generic message, because library messages may
 * carry details a caller should not see. Messages are cut to MAX_STATUS_MESSAGE_CHARS, their start and end kept, with no
 * lone surrogate (bounded).
 */
export function toServiceError(err: unknown): Partial<ServiceError> & { code: status; details: string; metadata: Metadata } {
  if (err instanceof MeshidError) {
    const metadata = new Metadata();
    if (err.retryAfterMs !== undefined) metadata.set(RETRY_PUSHBACK_KEY, String(err.retryAfterMs));
    const message = bounded(err.message);
    return { code: GRPC_CODE[err.code], details: message, message, metadata };
  }
  if (isServiceError(err)) return { code: err.code, details: bounded(err.details ?? err.message), metadata: new Metadata() };
  return { code: status.INTERNAL, details: 'internal error', message: 'internal error', metadata: new Metadata() };
}

/** The reverse, for clients: a gRPC error received from a peer becomes a MeshidError with the same meaning. */
export function fromServiceError(err: unknown): MeshidError {
  if (err instanceof MeshidError) return err;
  if (isServiceError(err)) {
    const code = ERROR_CODE_BY_GRPC.get(err.code) ?? (err.code === status.DEADLINE_EXCEEDED || err.code === status.CANCELLED ? 'unavailable' : 'internal');
    return new MeshidError(code, err.details || err.message, { cause: err, retryAfterMs: retryPushbackMs(err.metadata) });
  }
  return new MeshidError('internal', err instanceof Error ? err.message : String(err), { cause: err });
}

/** The server's retry pushback when it is a wait (whole ms); A6 reads anything else as "do not retry", never sent by meshid. */
function retryPushbackMs(metadata: Metadata | undefined): number | undefined {
  const value = metadata?.get(RETRY_PUSHBACK_KEY)[0];
  return typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : undefined;
}

export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number' && 'details' in err;
}
