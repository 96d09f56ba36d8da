/**
 * A partner's root rotation as its bundle endpoint publishes it (Federation §4.1: the next root added ahead of use,
 * the old one removed once nothing chains to it), through one poll each, to what a workload and its Envoy trust:
 * FetchX509SVID's federated_bundles and the SDS validation context an open StreamSecrets pushes. A real server polls a
 * real HTTPS endpoint (https_spiffe); a real agent serves the workload.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startCluster } from '../support/cluster.js';
import { event } from '../support/event.js';
import { TestCa } from '../support/fake-sds-cache.js';
import { federateThroughEndpoint, partnerEndpoint } from '../support/partner-endpoint.js';
import { connectSds, envoyNode, pemBlocks, secretsByName, SotwClient, spiffeTrustDomains, type DiscoveryResponse } from '../support/sds-client.js';
import { teardown } from '../support/teardown.js';

const PARTNER = 'spiffe://partner.example';

test("a partner's root rotation reaches FetchX509SVID and an open SDS stream within one poll of its bundle endpoint, the retired root leaving both", async (t) => {
  const cluster = await startCluster('meshid-federation-rotation-');
  teardown(t).after(() => cluster.cleanup());
  const partner = new TestCa('partner.example');
  const next = new TestCa('partner.example');
  teardown(t).after(() => [partner, next].forEach((c) => c.dispose()));
  const endpoint = await partnerEndpoint(t, partner);
  const serve = (roots: Buffer[]): string => (endpoint.body = bundleToSpiffeJson({ ...partner.bundle(), x509Authorities: roots }));
  const seed = serve([partner.rootDer]);
  await federateThroughEndpoint(cluster, endpoint, seed);
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });
  const client = agent.client(20_000);
  const svids = client.watchX509Svids();
  const sds = connectSds(agent.socketPath);
  const stream = new SotwClient(sds);
  teardown(t).after(() => {
    svids.cancel();
    stream.cancel();
    client.close();
    sds.close();
  });

  const hex = (roots: Buffer[]): string[] => roots.map((d) => d.toString('hex')).sort();
  /** The partner's roots in the next FetchX509SVID message that differs from `seen`. */
  const svidRoots = (seen: string[] | undefined): Promise<string[]> =>
    event(
      `a FetchX509SVID message whose ${PARTNER} roots differ from ${seen === undefined ? 'none yet' : `the ${seen.length} seen`}`,
      (async () => {
        for (;;) {
          const next = await svids.next();
          assert.equal(next.done, false, 'the stream stays open');
          const bundle = (next.value as X509SvidResponse).federated_bundles?.[PARTNER];
          const roots = bundle === undefined ? [] : hex(splitConcatenatedDer(bundle));
          if (JSON.stringify(roots) !== JSON.stringify(seen)) return roots;
        }
      })(),
      20_000,
    );
  /** The partner's roots in the next SDS response, ACKed as Envoy would. */
  const sdsRoots = async (): Promise<string[]> => {
    const response: DiscoveryResponse = await stream.next(20_000);
    stream.ack(response, [PARTNER]);
    const [domain] = spiffeTrustDomains(secretsByName(response).get(PARTNER)!);
    assert.equal(domain!.name, 'partner.example');
    return hex(pemBlocks(domain!.trustBundlePem));
  };
  stream.subscribe([PARTNER], envoyNode('federated-sidecar'));

  let roots = await svidRoots(undefined);
  while (roots.length === 0) roots = await svidRoots(roots);
  assert.deepEqual(roots, hex([partner.rootDer]), 'the seed');
  assert.deepEqual(await sdsRoots(), hex([partner.rootDer]));

  // The partner publishes its next root beside the current one: one poll, and both are trusted everywhere.
  serve([partner.rootDer, next.rootDer]);
  await cluster.admin.call('Federation', 'RefreshBundle', { trust_domain: 'partner.example' });
  assert.deepEqual(await svidRoots(roots), hex([partner.rootDer, next.rootDer]));
  assert.deepEqual(await sdsRoots(), hex([partner.rootDer, next.rootDer]), 'pushed on the open stream');

  // The partner retires its old root: one poll, and it is trusted nowhere.
  serve([next.rootDer]);
  await cluster.admin.call('Federation', 'RefreshBundle', { trust_domain: 'partner.example' });
  assert.deepEqual(await svidRoots(hex([partner.rootDer, next.rootDer])), hex([next.rootDer]));
  assert.deepEqual(await sdsRoots(), hex([next.rootDer]));
  assert.equal(endpoint.requests, 3, 'the poll at creation, then one per refresh: no other meanwhile');
});
