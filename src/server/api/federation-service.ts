import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { invalidArgument, isMeshidError, notFound, unavailable } from '../../common/errors.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import type { FederatedBundlePoller, RelationshipStatus } from '../federation/bundle-poller.js';
import { unary } from './handler.js';

const seconds = (ms: number | undefined): number => (ms === undefined ? 0 : Math.floor(ms / 1000));

function relationshipToProto(s: RelationshipStatus): Record<string, unknown> {
  const r = s.relationship;
  return {
    trust_domain: r.trustDomain,
    bundle_endpoint_url: r.bundleEndpointUrl,
    bundle_endpoint_profile: r.profile,
    endpoint_spiffe_id: r.endpointSpiffeId ?? '',
    last_attempt_at: seconds(s.lastAttemptAt),
    last_success_at: seconds(s.lastSuccessAt),
    last_error: s.lastError?.message ?? '',
    next_poll_at: seconds(s.nextPollAt),
  };
}

/** Admin API: federation relationships and their polls (meshid.admin.v1.Federation). */
export function federationService(poller: FederatedBundlePoller, log: Logger): UntypedServiceImplementation {
  return {
    ListFederationRelationships: unary(log, 'ListFederationRelationships', () => ({
      relationships: poller.statuses().map(relationshipToProto),
    })),

    RefreshBundle: unary(log, 'RefreshBundle', async (req: { trust_domain?: string }) => {
      if (!req.trust_domain) throw invalidArgument('trust_domain is required');
      const td = parseTrustDomain(req.trust_domain);
      if (poller.status(td) === undefined) {
        throw notFound(`${td} has no federation relationship: add it to federates_with in the server's config file`);
      }
      await poller.refresh(td);
      const status = poller.status(td)!;
      const error = status.lastError;
      if (error !== undefined) throw isMeshidError(error) ? error : unavailable(`refreshing the bundle of ${td} failed: ${error.message}`);
      return relationshipToProto(status);
    }),
  };
}
