/**
 * Domain errors. Every error meshid raises on purpose is a MeshidError with a string code; the one table in
 * grpc-status.ts turns the code into a gRPC status, and the CLIs turn it into one line on stderr.
 * Messages must be safe to show to the caller: never include key material or token values.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'permission_denied'
  | 'failed_precondition'
  | 'aborted'
  | 'resource_exhausted'
  | 'unavailable'
  | 'unauthenticated'
  | 'unimplemented'
  | 'internal';

export class MeshidError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;
  /**
   * How long the caller should wait before trying again, in whole ms: set when the server knows (a budget spent for
   * now), and sent along as gRPC retry pushback (grpc-status.ts).
   */
  readonly retryAfterMs: number | undefined;
  /**
   * Whether the server itself failed, whatever code the caller gets: its disk is full, its datastore read-only or
   * damaged. The code tells the caller whether to retry; this tells the server to log the failure at error level with
   * its cause, which the operator must act on, rather than at debug with the refusals a client can repeat at will.
   * Always true for internal.
   */
  readonly serverFault: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; data?: Record<string, unknown>; retryAfterMs?: number; serverFault?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshidError';
    this.code = code;
    this.data = options.data;
    this.retryAfterMs = options.retryAfterMs;
    this.serverFault = code === 'internal' || options.serverFault === true;
  }
}

export const invalidArgument = (message: string, cause?: unknown): MeshidError =>
  new MeshidError('invalid_argument', message, { cause });
export const notFound = (message: string): MeshidError => new MeshidError('not_found', message);
export const alreadyExists = (message: string): MeshidError => new MeshidError('already_exists', message);
export const permissionDenied = (message: string): MeshidError => new MeshidError('permission_denied', message);
export const failedPrecondition = (message: string, cause?: unknown): MeshidError =>
  new MeshidError('failed_precondition', message, { cause });
/** A write lost a race: what it read was changed meanwhile (gRPC ABORTED: retry from a fresh read). */
export const aborted = (message: string): MeshidError => new MeshidError('aborted', message);
export const resourceExhausted = (message: string): MeshidError => new MeshidError('resource_exhausted', message);
/**
 * A budget spent for now, over in `waitMs`: RESOURCE_EXHAUSTED saying when to come back twice, at the end of the
 * message ("…; retry in 3 s", all that agents older than the pushback read) and as `retryAfterMs`.
 */
export const budgetSpent = (message: string, waitMs: number): MeshidError =>
  new MeshidError('resource_exhausted', `${message}; retry in ${Math.ceil(waitMs / 1000)} s`, { retryAfterMs: Math.ceil(waitMs) });
export const unavailable = (message: string, cause?: unknown): MeshidError =>
  new MeshidError('unavailable', message, { cause });
export const unauthenticated = (message: string): MeshidError => new MeshidError('unauthenticated', message);
export const internal = (message: string, cause?: unknown): MeshidError => new MeshidError('internal', message, { cause });

export function isMeshidError(err: unknown, code?: ErrorCode): err is MeshidError {
  return err instanceof MeshidError && (code === undefined || err.code === code);
}
