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
 * Turns anything thrown into a gRPC ServiceError. A MeshidError keeps its code and message; anything else becomes
 * INTERNAL with a generic message, because library messages may carry details a caller should not see.
 */
export function toServiceError(err: unknown): Partial<ServiceError> & { code: status; details: string } {
  if (err instanceof MeshidError) {
    return { code: GRPC_CODE[err.code], details: err.message, message: err.message, metadata: new Metadata() };
  }
  if (isServiceError(err)) return { code: err.code, details: err.details ?? err.message, metadata: new Metadata() };
  return { code: status.INTERNAL, details: 'internal error', message: 'internal error', metadata: new Metadata() };
}

/** The reverse, for clients: a gRPC error received from a peer becomes a MeshidError with the same meaning. */
export function fromServiceError(err: unknown): MeshidError {
  if (err instanceof MeshidError) return err;
  if (isServiceError(err)) {
    const code = ERROR_CODE_BY_GRPC.get(err.code) ?? (err.code === status.DEADLINE_EXCEEDED || err.code === status.CANCELLED ? 'unavailable' : 'internal');
    return new MeshidError(code, err.details || err.message, { cause: err });
  }
  return new MeshidError('internal', err instanceof Error ? err.message : String(err), { cause: err });
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number' && 'details' in err;
}
