/**
 * A federation partner's https_spiffe bundle endpoint: real HTTPS under an SVID of the partner's test CA, answering
 * whatever document the test sets (not meshid's endpoint: the tests decide what a partner serves, flaws included).
 */
import type { TestContext } from 'node:test';
import { createPrivateKey } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { compileRelationships, type FederationRelationship } from '../../src/server/federation/relationship.js';
import type { TestCa } from './fake-sds-cache.js';
import type { Cluster } from './cluster.js';
import { teardown } from './teardown.js';

export interface PartnerEndpoint {
  readonly url: string;
  /** The SPIFFE ID its SVID carries. */
  readonly endpointId: string;
  /** The relationship with `ca`'s trust domain through this endpoint, as example.org's config would hold it. */
  readonly rel: FederationRelationship;
  /** What the endpoint answers next, with 200. */
  body: string;
  requests: number;
}

/** Listens on 127.0.0.1 until the test ends. */
export async function partnerEndpoint(t: TestContext, ca: TestCa, endpointId = `spiffe://${ca.trustDomain}/bundle-endpoint`): Promise<PartnerEndpoint> {
  const svid = ca.issue(endpointId);
  const key = createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' });
  const state = { body: '', requests: 0 };
  const server = https.createServer({ cert: certificatesToPem(svid.chain), key }, (_req, res) => {
    state.requests++;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(state.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  teardown(t).after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const [rel] = compileRelationships(
    { [ca.trustDomain]: { bundle_endpoint_url: url, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpointId } },
    'example.org',
  );
  return Object.assign(state, { url, endpointId, rel: rel! });
}

/**
 * Makes `cluster` (example.org) federate with partner.example through `endpoint`, seeded with `seed` (a SPIFFE bundle
 * document), and registers spiffe://example.org/federated for this process's uid, federating with it.
 */
export async function federateThroughEndpoint(cluster: Cluster, endpoint: PartnerEndpoint, seed: string): Promise<void> {
  await cluster.admin.call('Federation', 'CreateFederationRelationship', {
    relationship: { trust_domain: 'partner.example', bundle_endpoint_url: endpoint.url, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpoint.endpointId },
    bundle: seed,
    bundle_format: 'spiffe',
  });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/federated', selectors: [`unix:uid:${process.getuid!()}`], federatesWith: ['partner.example'] });
}
