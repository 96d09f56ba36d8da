import type { ServerWritableStream } from '@grpc/grpc-js';
import { jwtBundlesResponse, sameBundlesResponse, x509BundlesResponse } from './bundles-response.js';
import type { StreamView } from './identity-stream.js';
import type { EmptyRequest, JwtBundlesResponse, X509BundlesResponse } from './messages.js';
import { openStream } from './stream-rpc.js';
import type { WorkloadContext } from './workload-context.js';

const x509BundlesView: StreamView<X509BundlesResponse> = { render: x509BundlesResponse, same: sameBundlesResponse };
const jwtBundlesView: StreamView<JwtBundlesResponse> = { render: jwtBundlesResponse, same: sameBundlesResponse };

/** The Workload API's FetchX509Bundles (WL-API §5.2.2): the caller's X.509 bundles, again whenever they change. */
export function fetchX509BundlesRpc(ctx: WorkloadContext) {
  return (call: ServerWritableStream<EmptyRequest, X509BundlesResponse>): void => {
    openStream(ctx, 'FetchX509Bundles', call, x509BundlesView, true);
  };
}

/** The Workload API's FetchJWTBundles (WL-API §6.2.2): the caller's JWT bundles, again whenever they change. */
export function fetchJwtBundlesRpc(ctx: WorkloadContext) {
  return (call: ServerWritableStream<EmptyRequest, JwtBundlesResponse>): void => {
    openStream(ctx, 'FetchJWTBundles', call, jwtBundlesView, true);
  };
}
