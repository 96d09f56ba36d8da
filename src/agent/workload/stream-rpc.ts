import type { ServerWritableStream } from '@grpc/grpc-js';
import { IdentityStream, type StreamCall, type StreamView } from './identity-stream.js';
import type { EmptyRequest } from './messages.js';
import { checkSecurityHeader } from './security-header.js';
import type { Admission, WorkloadContext } from './workload-context.js';

/**
 * Runs one of the Workload API's streaming calls (FetchX509SVID, FetchX509Bundles, FetchJWTBundles): the header,
 * admission, then an IdentityStream with `view` until the call ends; a refusal is logged and ends the call with its
 * status. `servesVerifiers`: with allowUnauthenticatedVerifiers, a caller no entry matches is admitted too.
 */
export function openStream<Res>(
  ctx: WorkloadContext,
  rpc: string,
  call: ServerWritableStream<EmptyRequest, Res>,
  view: StreamView<Res>,
  servesVerifiers = false,
): void {
  const { deps, refusals, recheck, pendingTimeoutMs, verifiersAllowed, open, admitEntitled, admitVerifier, refuse } = ctx;
  const requireEntitlement = !(servesVerifiers && verifiersAllowed);
  const fail = (error: unknown): void => {
    if (!call.cancelled) call.emit('error', refuse(error, rpc, call));
  };
  try {
    checkSecurityHeader(call.metadata);
  } catch (error) {
    fail(error);
    return;
  }
  const start = ({ selectors }: Admission): void => {
    if (call.cancelled) return;
    const stream: IdentityStream<Res> = new IdentityStream<Res>({
      call: call as unknown as StreamCall<Res>,
      view,
      cache: deps.cache,
      selectors,
      recheck: () => recheck(call, selectors),
      requireEntitlement,
      clock: deps.clock,
      pendingTimeoutMs,
      refused: (error) => refusals.refused(rpc, error, call),
      onClose: () => open.delete(stream as IdentityStream<unknown>),
    });
    open.add(stream as IdentityStream<unknown>);
    stream.start();
  };
  let admission: Admission | Promise<Admission>;
  try {
    admission = requireEntitlement ? admitEntitled(call) : admitVerifier(call);
  } catch (error) {
    fail(error);
    return;
  }
  if (admission instanceof Promise) admission.then(start, fail);
  else start(admission);
}
