import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { ValidateJwtSvidRequest, ValidateJwtSvidResponse } from './messages.js';
import { unary } from './unary-rpc.js';
import { requireValidateFields, validateJwtSvidRequest } from './validate-jwt.js';
import type { WorkloadContext } from './workload-context.js';

/** The Workload API's ValidateJWTSVID (WL-API §6.2.3): a JWT-SVID checked against the caller's bundles. */
export function validateJwtSvidRpc(ctx: WorkloadContext) {
  const { deps, attest } = ctx;
  const allowedForeignClaims: ReadonlySet<string> = new Set(deps.options?.allowedForeignJwtClaims ?? []);

  async function validate(call: ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>): Promise<ValidateJwtSvidResponse> {
    const request = call.request;
    // Mandatory fields first: a malformed request is the caller's mistake whoever the caller is.
    requireValidateFields(request);
    const snapshot = deps.cache.snapshot(await attest(call));
    return validateJwtSvidRequest(request, [snapshot.bundle, ...snapshot.federatedBundles], deps.clock.now(), {
      ownTrustDomain: snapshot.bundle.trustDomain,
      allowedForeignClaims,
    });
  }

  return (call: ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>, callback: sendUnaryData<ValidateJwtSvidResponse>): void => {
    unary(ctx, 'ValidateJWTSVID', call, callback, () => validate(call));
  };
}
