import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { toServiceError } from '../../common/grpc-status.js';
import { MeshidError } from '../../common/errors.js';

/**
 * Adapts an async function to a grpc-js unary handler: its result is the response, anything it throws goes through
 * the one error mapping. Unexpected errors are logged with their cause; expected ones at debug level.
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
          if (err instanceof MeshidError) log.debug({ rpc: method, code: err.code, reason: err.message }, 'request refused');
          else log.error({ rpc: method, err }, 'request failed');
          callback(toServiceError(err));
        },
      );
  };
}
