import { type UntypedServiceImplementation } from '@grpc/grpc-js';
import { nodeContext, type NodeServiceDeps } from './node-context.js';
import { attestCall } from './node-attest.js';
import { renewCall, signJwtSvidCall, signX509SvidsCall } from './node-signing.js';
import { syncCall } from './node-sync.js';

/** The agent API (meshid.agent.v1.Node): attestation, renewal, the push stream and signing. */
export function nodeService(deps: NodeServiceDeps): UntypedServiceImplementation {
  const ctx = nodeContext(deps);
  return {
    Attest: attestCall(ctx),
    Renew: renewCall(ctx),
    SignX509Svids: signX509SvidsCall(ctx),
    SignJwtSvid: signJwtSvidCall(ctx),
    Sync: syncCall(ctx),
  };
}
