import type { ServerWritableStream } from '@grpc/grpc-js';
import type { StreamView } from './identity-stream.js';
import type { EmptyRequest, X509SvidResponse } from './messages.js';
import { openStream } from './stream-rpc.js';
import type { WorkloadContext } from './workload-context.js';
import { sameX509SvidResponse, x509SvidResponse, type DuplicateHint } from './x509-response.js';

/**
 * svids[0] must be the real default identity. The first message waits until every matching entry has its SVID (as
 * SPIRE's agent does, so a one-shot fetch sees them all), or failed to get one and is being retried (the server
 * unreachable, or a refusal that came back on the retry: the other SVIDs are served meanwhile); every message waits
 * while the default's SVID is missing (say, not yet signed, or expired while the server is unreachable), which would
 * otherwise make a sibling the default.
 */
function x509SvidView(onDuplicateHint: DuplicateHint): StreamView<X509SvidResponse> {
  return {
    render: (snapshot, first) =>
      (!first || snapshot.complete) && snapshot.defaultSvid !== undefined ? x509SvidResponse(snapshot, onDuplicateHint) : undefined,
    same: sameX509SvidResponse,
  };
}

/** The Workload API's FetchX509SVID (WL-API §5): the caller's X509-SVIDs, again whenever they change. */
export function fetchX509SvidRpc(ctx: WorkloadContext) {
  const { duplicateHint } = ctx;
  const x509View = x509SvidView(duplicateHint('FetchX509SVID'));
  return (call: ServerWritableStream<EmptyRequest, X509SvidResponse>): void => {
    openStream(ctx, 'FetchX509SVID', call, x509View);
  };
}
