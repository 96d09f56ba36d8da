import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { aborted, invalidArgument, isMeshidError } from '../../common/errors.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import type { CaManager } from '../ca/ca-manager.js';
import { BUNDLE_DELETE_MODES, type BundleDeleteMode, type Datastore } from '../datastore/datastore.js';
import { federatedBundleFromText, rootsOfAnotherTrustDomain } from '../federation/federated-bundle.js';
import type { FederatedBundlePoller } from '../federation/bundle-poller.js';
import { storedBundleToProto, trustBundleToProto } from './convert.js';
import { unary } from './handler.js';

/** Admin API: the own bundle and federated bundles (meshid.admin.v1.Bundles). */
export function bundleService(
  ds: Datastore, ca: CaManager, federation: Pick<FederatedBundlePoller, 'anchorsReplaced'>, clock: Clock, log: Logger,
): UntypedServiceImplementation {
  const foreign = (input: string | undefined): string => {
    if (!input) throw invalidArgument('trust_domain is required');
    const td = parseTrustDomain(input);
    if (td === ca.trustDomain) throw invalidArgument(`${td} is this server's own trust domain; its bundle is managed by the CA`);
    return td;
  };
  return {
    GetBundle: unary(log, 'GetBundle', () => {
      const bundle = trustBundleToProto(ca.bundle());
      // The bundle model agents are sent has no key expiry; the CA journal has it (a JWT key's keyId is its kid).
      const expiry = new Map(ca.listAuthorities().filter((r) => r.kind === 'jwt').map((r) => [r.keyId, Math.floor(r.notAfter / 1000)]));
      return { ...bundle, jwt_authorities: bundle.jwt_authorities?.map((k) => ({ ...k, expires_at: expiry.get(k.kid ?? '') ?? 0 })) };
    }),

    ListFederatedBundles: unary(log, 'ListFederatedBundles', async () => ({
      bundles: (await ds.listBundles()).filter((b) => b.trustDomain !== ca.trustDomain).map(storedBundleToProto),
    })),

    SetFederatedBundle: unary(log, 'SetFederatedBundle', async (req: { trust_domain?: string; bundle?: string; format?: string }) => {
      const td = foreign(req.trust_domain);
      const previous = await ds.getBundle(td);
      const stored = federatedBundleFromText(td, req.bundle ?? '', req.format, previous, clock.now(), (ignored) =>
        log.warn({ trustDomain: td, ignored }, 'the federated bundle set holds keys meshid leaves out or reads with a flaw, as each line of ignored says; the rest is stored'),
      );
      // Stored only over the bundle it was numbered after: a poll or another `bundle set` that wrote meanwhile would
      // otherwise make this one a refusal naming a sequence the operator never gave.
      await ds.setBundle(stored, { replaces: previous?.sequence ?? null }).catch((err: unknown) => {
        if (!isMeshidError(err, 'aborted')) throw err;
        throw aborted(`the bundle of ${td} was changed by another writer (a bundle poll or another bundle set) while this one was being stored: run the command again`);
      });
      log.info({ trustDomain: td, sequence: stored.sequence }, 'federated bundle set');
      const otherDomains = rootsOfAnotherTrustDomain(td, stored.x509Authorities);
      if (otherDomains !== undefined) log.warn({ trustDomain: td, reason: otherDomains.message }, 'the federated bundle set holds a CA of another trust domain');
      federation.anchorsReplaced(td);
      return storedBundleToProto(stored);
    }),

    DeleteFederatedBundle: unary(log, 'DeleteFederatedBundle', async (req: { trust_domain?: string; mode?: string }) => {
      const td = foreign(req.trust_domain);
      // SPIRE's enum spellings (RESTRICT, DISSOCIATE) mean the same; its DELETE, which deletes the entries, is not offered.
      const mode = (req.mode || 'restrict').toLowerCase();
      if (!(BUNDLE_DELETE_MODES as readonly string[]).includes(mode)) {
        throw invalidArgument(`mode "${req.mode}" must be one of ${BUNDLE_DELETE_MODES.join(', ')} (to delete the entries too, delete them first)`);
      }
      const dissociated = await ds.deleteBundle(td, mode as BundleDeleteMode);
      log.info({ trustDomain: td, mode, dissociatedEntries: dissociated }, 'federated bundle deleted');
      return { dissociated_entries: dissociated };
    }),
  };
}
