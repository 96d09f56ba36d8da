import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { toServiceError } from '../../common/grpc-status.js';
import { MeshidError } from '../../common/errors.js';

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

/**
 * Adapts an async function to a grpc-js unary handler: its result is the response, anything it throws goes through
 * the one error mapping. Server faults (isServerFault) are logged with their cause; refusals at debug level.
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
          if (isServerFault(err)) log.error({ rpc: method, err }, 'request failed');
          else if (err instanceof MeshidError) log.debug({ rpc: method, code: err.code, reason: err.message }, 'request refused');
          callback(toServiceError(err));
        },
      );
  };
}
