import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { checkSecurityHeader } from './security-header.js';
import type { WorkloadContext } from './workload-context.js';

/**
 * Runs one of the Workload API's unary calls (FetchJWTSVID, ValidateJWTSVID): the header, then `serve`; its answer is
 * the response, anything it throws a refusal, logged and sent with its status.
 */
export function unary<Req, Res>(
  ctx: WorkloadContext,
  rpc: string,
  call: ServerUnaryCall<Req, Res>,
  callback: sendUnaryData<Res>,
  serve: () => Promise<Res>,
): void {
  const { refuse } = ctx;
  const run = async (): Promise<Res> => {
    checkSecurityHeader(call.metadata);
    return serve();
  };
  run().then(
    (response) => callback(null, response),
    (error: unknown) => {
      // A caller that cancelled reads no answer: its call's end is not a refusal to log.
      if (!call.cancelled) callback(refuse(error, rpc, call));
    },
  );
}
