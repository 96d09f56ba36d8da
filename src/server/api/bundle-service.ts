import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { invalidArgument } from '../../common/errors.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { bundleFromSpiffeJson } from '../../common/spiffe/bundle.js';
import { pemToDerList } from '../../common/x509/pem.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { CaManager } from '../ca/ca-manager.js';
import { BUNDLE_DELETE_MODES, type BundleDeleteMode, type Datastore, type StoredBundle } from '../datastore/datastore.js';
import { storedFederatedBundle } from '../federation/federated-bundle.js';
import { storedBundleToProto, trustBundleToProto } from './convert.js';
import { unary } from './handler.js';

/** Admin API: the own bundle and federated bundles (meshid.admin.v1.Bundles). */
export function bundleService(ds: Datastore, ca: CaManager, clock: Clock, log: Logger): UntypedServiceImplementation {
  const foreign = (input: string | undefined): string => {
    if (!input) throw invalidArgument('trust_domain is required');
    const td = parseTrustDomain(input);
    if (td === ca.trustDomain) throw invalidArgument(`${td} is this server's own trust domain; its bundle is managed by the CA`);
    return td;
  };
  return {
    GetBundle: unary(log, 'GetBundle', () => trustBundleToProto(ca.bundle())),

    ListFederatedBundles: unary(log, 'ListFederatedBundles', async () => ({
      bundles: (await ds.listBundles()).filter((b) => b.trustDomain !== ca.trustDomain).map(storedBundleToProto),
    })),

    SetFederatedBundle: unary(log, 'SetFederatedBundle', async (req: { trust_domain?: string; bundle?: string; format?: string }) => {
      const td = foreign(req.trust_domain);
      const text = (req.bundle ?? '').trim();
      if (text === '') throw invalidArgument('bundle is empty: pass a SPIFFE bundle (JSON) or PEM CA certificates');
      const format = req.format || (text.startsWith('{') ? 'spiffe' : 'pem');
      const previous = (await ds.listBundles()).find((b) => b.trustDomain === td);
      const now = clock.now();
      let stored: StoredBundle;
      if (format === 'spiffe') {
        stored = storedFederatedBundle(td, bundleFromSpiffeJson(td, text), previous, now);
      } else if (format === 'pem') {
        const ders = pemToDerList(text);
        for (const der of ders) {
          if (!parseCertificate(der).isCa) throw invalidArgument('every certificate in a federated bundle must be a CA certificate');
        }
        stored = { trustDomain: td, x509Authorities: ders, jwtAuthorities: [], sequence: (previous?.sequence ?? 0) + 1, updatedAt: now };
      } else {
        throw invalidArgument(`format "${req.format}" must be spiffe or pem`);
      }
      if (stored.x509Authorities.length === 0 && stored.jwtAuthorities.length === 0) {
        throw invalidArgument(`the bundle for ${td} holds no X.509 authorities and no JWT keys`);
      }
      await ds.setBundle(stored);
      log.info({ trustDomain: td, sequence: stored.sequence }, 'federated bundle set');
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
