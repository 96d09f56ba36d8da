import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { aborted, alreadyExists, failedPrecondition, invalidArgument, isMeshidError, notFound, unavailable } from '../../common/errors.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import type { Datastore, StoredBundle, StoredRelationship } from '../datastore/datastore.js';
import type { FederatedBundlePoller, RelationshipStatus } from '../federation/bundle-poller.js';
import { federatedBundleFromText, rootsOfAnotherTrustDomain } from '../federation/federated-bundle.js';
import { compileRelationship, endpointTrustDomain, type FederationRelationship } from '../federation/relationship.js';
import { unary } from './handler.js';

const seconds = (ms: number | undefined): number => (ms === undefined ? 0 : Math.floor(ms / 1000));

interface ProtoRelationship {
  trust_domain?: string;
  bundle_endpoint_url?: string;
  bundle_endpoint_profile?: string;
  endpoint_spiffe_id?: string;
}

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
    source: s.source,
  };
}

/** A relationship made here as the poller no longer holds it (deleted meanwhile): never polled. */
function unpolled(relationship: FederationRelationship): RelationshipStatus {
  return { relationship, source: 'api', lastAttemptAt: undefined, lastSuccessAt: undefined, lastError: undefined, nextPollAt: undefined };
}

/**
 * Admin API: federation relationships and their polls (meshid.admin.v1.Federation). Those of the config file are
 * listed and refreshed here but changed only in the config; those made here are stored in the datastore and polled
 * from the moment they are made.
 */
export function federationService(
  poller: FederatedBundlePoller, ds: Datastore, ownTrustDomain: string, clock: Clock, log: Logger,
): UntypedServiceImplementation {
  const trustDomainOf = (input: string | undefined): string => {
    if (!input) throw invalidArgument('trust_domain is required');
    return parseTrustDomain(input);
  };
  /** A seed holding another trust domain's CA is stored, as `bundle set` stores it, and logged as it logs it. */
  const warnOfAnotherTrustDomainsCa = (td: string, seed: StoredBundle | undefined): void => {
    const other = seed === undefined ? undefined : rootsOfAnotherTrustDomain(td, seed.x509Authorities);
    if (other !== undefined) log.warn({ trustDomain: td, reason: other.message }, "the relationship's bundle holds a CA of another trust domain");
  };
  /**
   * An https_spiffe endpoint of a third trust domain is authenticated by that domain's stored bundle (Federation
   * §5.2.2.4), which nothing here fetches: without one every poll fails, which the relationship's status shows only
   * after the first poll. Said at once, as SPIRE warns at create.
   */
  const warnOfUnauthenticatedEndpoint = async (rel: FederationRelationship): Promise<void> => {
    if (rel.profile !== 'https_spiffe') return;
    const authority = endpointTrustDomain(rel);
    if (authority === rel.trustDomain || authority === ownTrustDomain || (await ds.getBundle(authority)) !== undefined) return;
    log.warn(
      { trustDomain: rel.trustDomain, endpointTrustDomain: authority },
      `the relationship's endpoint ${rel.endpointSpiffeId} is authenticated by the bundle of ${authority}, and none is stored: ` +
        `every fetch fails until "meshid-server bundle set --trust-domain ${authority}" stores it (or a relationship with ${authority} does)`,
    );
  };
  const existing = (td: string): RelationshipStatus => {
    const status = poller.status(td);
    if (status === undefined) {
      throw notFound(`${td} has no federation relationship: create one with "meshid-server federation create", or add it to federates_with in the server's config file`);
    }
    return status;
  };
  const madeHere = (td: string, action: string): void => {
    if (existing(td).source === 'config') {
      throw failedPrecondition(`the relationship with ${td} comes from federates_with in the server's config file: ${action} it there and restart the server`);
    }
  };
  const compile = (p: ProtoRelationship | undefined): FederationRelationship => {
    const td = trustDomainOf(p?.trust_domain);
    const raw = {
      bundle_endpoint_url: p?.bundle_endpoint_url || undefined,
      bundle_endpoint_profile: p?.bundle_endpoint_profile || undefined,
      endpoint_spiffe_id: p?.endpoint_spiffe_id || undefined,
    };
    return compileRelationship(td, raw, ownTrustDomain, `relationship with ${td}`);
  };
  const stored = (rel: FederationRelationship, now: number): StoredRelationship => ({ ...rel, createdAt: now, updatedAt: now });
  /**
   * A seed is numbered after the bundle read before it, and stored only over that one: a poll or `bundle set` that
   * wrote meanwhile makes it ABORTED saying so, as `bundle set` says it, not a refusal naming a sequence nobody gave.
   */
  const seedRaced = (td: string) => (err: unknown): never => {
    if (!isMeshidError(err, 'aborted')) throw err;
    throw aborted(`the bundle of ${td} was changed by another writer (a bundle poll or a bundle set) while the relationship's bundle was being stored: run the command again`);
  };
  /**
   * The bundle a create or update brings along (its `bundle` field), read as `bundle set` reads one, and the keys it
   * left out. `replaces`: a poll that stored a bundle meanwhile is not silently undone (aborted; the command is
   * retried).
   */
  const seedOf = async (
    td: string,
    req: { bundle?: string; bundle_format?: string },
    now: number,
  ): Promise<{ seed: { bundle: StoredBundle; replaces: number | null } | undefined; ignored: readonly string[] }> => {
    if (!req.bundle) return { seed: undefined, ignored: [] };
    let ignored: readonly string[] = [];
    const previous = await ds.getBundle(td);
    const bundle = federatedBundleFromText(td, req.bundle, req.bundle_format, previous, now, (reasons) => (ignored = reasons));
    return { seed: { bundle, replaces: previous?.sequence ?? null }, ignored };
  };
  /** A seed's keys left out, logged as `bundle set` logs them, once the seed is stored. */
  const warnOfIgnoredKeys = (td: string, ignored: readonly string[]): void => {
    if (ignored.length > 0) log.warn({ trustDomain: td, ignored }, "the relationship's bundle holds keys meshid leaves out or reads with a flaw, as each line of ignored says; the rest is stored");
  };

  return {
    ListFederationRelationships: unary(log, 'ListFederationRelationships', () => ({
      relationships: poller.statuses().map(relationshipToProto),
    })),

    GetFederationRelationship: unary(log, 'GetFederationRelationship', (req: { trust_domain?: string }) =>
      relationshipToProto(existing(trustDomainOf(req.trust_domain))),
    ),

    CreateFederationRelationship: unary(log, 'CreateFederationRelationship', async (req: {
      relationship?: ProtoRelationship; bundle?: string; bundle_format?: string;
    }) => {
      const rel = compile(req.relationship);
      const td = rel.trustDomain;
      if (poller.status(td)?.source === 'config') {
        throw alreadyExists(`a federation relationship with ${td} already exists in federates_with of the server's config file`);
      }
      const now = clock.now();
      const { seed, ignored } = await seedOf(td, req, now);
      await ds.createFederationRelationship(stored(rel, now), seed).catch(seedRaced(td));
      poller.set(rel, 'api');
      // The seed may be what a failing relationship hosted by td's endpoint waits for, as after `bundle set`.
      if (seed !== undefined) poller.anchorsReplaced(td);
      log.info({ trustDomain: td, url: rel.bundleEndpointUrl, profile: rel.profile, seeded: seed !== undefined }, 'federation relationship created');
      warnOfAnotherTrustDomainsCa(td, seed?.bundle);
      warnOfIgnoredKeys(td, ignored);
      await warnOfUnauthenticatedEndpoint(rel);
      return relationshipToProto(poller.status(td)!);
    }),

    UpdateFederationRelationship: unary(log, 'UpdateFederationRelationship', async (req: {
      relationship?: ProtoRelationship; bundle?: string; bundle_format?: string;
    }) => {
      const rel = compile(req.relationship);
      const td = rel.trustDomain;
      madeHere(td, 'change');
      const now = clock.now();
      // The seed is stored in the relationship's transaction, so a relationship deleted meanwhile (not_found) keeps no
      // bundle of the failed update.
      const { seed, ignored } = await seedOf(td, req, now);
      await ds.updateFederationRelationship(stored(rel, now), seed).catch(seedRaced(td));
      // A delete that committed after this update, and took the relationship out of the poller before it got here,
      // stays a delete: the update was done, then undone.
      const status = poller.replace(rel, 'api') ?? unpolled(rel);
      if (seed !== undefined) poller.anchorsReplaced(td);
      log.info({ trustDomain: td, url: rel.bundleEndpointUrl, profile: rel.profile, seeded: seed !== undefined }, 'federation relationship updated');
      warnOfAnotherTrustDomainsCa(td, seed?.bundle);
      warnOfIgnoredKeys(td, ignored);
      await warnOfUnauthenticatedEndpoint(rel);
      return relationshipToProto(status);
    }),

    DeleteFederationRelationship: unary(log, 'DeleteFederationRelationship', async (req: { trust_domain?: string }) => {
      const td = trustDomainOf(req.trust_domain);
      madeHere(td, 'remove');
      const last = existing(td);
      await ds.deleteFederationRelationship(td);
      poller.remove(td);
      // A relationship whose endpoint never answered (or whose bundle was deleted) leaves none behind. Only a remark:
      // a look-up that fails must not turn the delete, done, into a failure.
      const bundleStored = await ds.getBundle(td).then((b) => b !== undefined, () => undefined);
      const after = bundleStored === undefined ? '' : bundleStored ? '; its bundle stays stored' : '; no bundle of it is stored';
      log.info({ trustDomain: td, bundleStored }, `federation relationship deleted${after}`);
      return relationshipToProto(last);
    }),

    RefreshBundle: unary(log, 'RefreshBundle', async (req: { trust_domain?: string }) => {
      const td = trustDomainOf(req.trust_domain);
      existing(td);
      // The poll's own outcome: a relationship deleted after its bundle was stored was refreshed all the same.
      const status = (await poller.refresh(td)) ?? existing(td);
      const error = status.lastError;
      if (error !== undefined) throw isMeshidError(error) ? error : unavailable(`refreshing the bundle of ${td} failed: ${error.message}`);
      return relationshipToProto(status);
    }),
  };
}
