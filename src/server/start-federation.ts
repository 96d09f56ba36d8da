import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import type { ServerConfig } from './config.js';
import type { Datastore } from './datastore/datastore.js';
import type { CaManager } from './ca/ca-manager.js';
import type { ServerSvid } from './server-svid.js';
import { BundleEndpoint } from './federation/bundle-endpoint.js';
import { ServingCertFile } from './federation/serving-cert-file.js';
import { FederatedBundlePoller, type BundleFetcher } from './federation/bundle-poller.js';
import { fetchFederatedBundle } from './federation/bundle-fetch.js';
import { withoutPassword, type EgressProxy } from './federation/egress-proxy.js';

/**
 * Polls the bundle endpoints of every relationship: the config's, then those made through the admin API. A trust
 * domain in both follows the config, as the operator last wrote it there.
 */
export async function startFederation(
  config: ServerConfig, ds: Datastore, ca: CaManager, clock: Clock, log: Logger, egress: EgressProxy | undefined,
): Promise<FederatedBundlePoller> {
  if (egress?.proxy instanceof Error) log.warn({ reason: egress.proxy.message }, 'HTTPS_PROXY names no proxy meshid-server can use: bundle endpoints it does not exempt (NO_PROXY) cannot be fetched');
  else if (egress !== undefined) log.info({ proxy: withoutPassword(egress.proxy) }, 'bundle endpoints are fetched through the HTTPS_PROXY proxy, except NO_PROXY hosts and loopback');
  const fetch: BundleFetcher = (rel, anchors, ownAnchors) => fetchFederatedBundle(rel, anchors, undefined, egress, ownAnchors);
  const poller = new FederatedBundlePoller(config.federatesWith, ds, clock, log, fetch, { trustDomain: config.trustDomain, roots: () => ca.bundle().x509Authorities });
  for (const rel of await ds.listFederationRelationships()) {
    if (poller.status(rel.trustDomain) !== undefined) {
      log.warn({ trustDomain: rel.trustDomain }, "a relationship made through the admin API is shadowed by federates_with in the config file; the config's is used");
      continue;
    }
    poller.set(rel, 'api');
  }
  poller.start();
  return poller;
}

/** The bundle endpoint, if configured: the CA's bundle under the server's SVID, or under the operator's web certificate. */
export async function startBundleEndpoint(config: ServerConfig, ca: CaManager, svid: ServerSvid, clock: Clock, log: Logger): Promise<BundleEndpoint | undefined> {
  if (config.bundleEndpointAddress === undefined) return undefined;
  const web = config.bundleEndpointWebCert && ServingCertFile.start(config.bundleEndpointWebCert, clock, log);
  try {
    return await BundleEndpoint.start({
      address: config.bundleEndpointAddress,
      sources: {
        profile: web ? 'https_web' : 'https_spiffe',
        bundle: () => ca.bundle(),
        onBundleChange: (listener) => ca.onBundleChange(listener),
        servingCert: () => web?.cert() ?? svid.identity(),
        onServingCertChange: (listener) => (web ? web.onChange(listener) : svid.onChange(listener)),
      },
      log,
      onClose: () => web?.stop(),
    });
  } catch (err) {
    web?.stop();
    throw err;
  }
}
