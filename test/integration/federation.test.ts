/**
 * A federated trust domain end to end: its bundle set on a real server reaches a workload of a real agent through
 * an entry that federates with it, and deleting it is refused while that entry federates with it, or takes it out
 * of the entry (dissociate), which the workload's open bundle stream then shows. A partner revoking its keys at its
 * bundle endpoint is withdrawn from the workload the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { X509BundlesResponse } from '../../src/agent/workload/messages.js';
import { isMeshidError } from '../../src/common/errors.js';
import { bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { startCluster } from '../support/cluster.js';
import { event } from '../support/event.js';
import { TestCa } from '../support/fake-sds-cache.js';
import { opensslCa } from '../support/openssl.js';
import { federateThroughEndpoint, partnerEndpoint } from '../support/partner-endpoint.js';
import { connectSds, envoyNode, fetchSecrets, secretsByName, spiffeTrustDomains } from '../support/sds-client.js';
import { jobFreeKeyPair } from '../support/job-free-key-pair.js';
import { teardown } from '../support/teardown.js';

const PARTNER = 'spiffe://partner.example';

test('a federated bundle reaches the workload; deleting it is refused while federated, and dissociation withdraws it', async (t) => {
  const cluster = await startCluster('meshid-federation-');
  teardown(t).after(() => cluster.cleanup());
  const partnerRoot = opensslCa(cluster.dir, 'Partner Root');
  const partnerDer = pemToDerList(fs.readFileSync(partnerRoot.cert, 'utf8'));
  await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.example', bundle: fs.readFileSync(partnerRoot.cert, 'utf8') });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/federated', selectors: [`unix:uid:${process.getuid!()}`], federatesWith: ['partner.example'] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });

  const client = agent.client(20_000);
  const watch = client.watchX509Bundles();
  teardown(t).after(() => {
    watch.cancel();
    client.close();
  });
  // The first message may come before the entry's sync; wait for the federated bundle.
  const message = await bundlesWith(watch, PARTNER);
  assert.deepEqual(splitConcatenatedDer(message.bundles[PARTNER]!), partnerDer);

  await assert.rejects(
    cluster.admin.call('Bundles', 'DeleteFederatedBundle', { trust_domain: 'partner.example' }),
    (err) => isMeshidError(err, 'failed_precondition') && /1 registration entry federates with partner\.example/.test(err.message),
  );
  // SPIRE's enum spelling works too.
  const r = await cluster.admin.call('Bundles', 'DeleteFederatedBundle', { trust_domain: 'partner.example', mode: 'DISSOCIATE' });
  assert.equal(r.dissociated_entries, 1);
  const next = await event('a FetchX509Bundles message after the dissociation', watch.next(), 20_000);
  assert.equal(next.done, false, 'the stream goes on: the workload still holds its entry');
  assert.deepEqual(Object.keys((next.value as X509BundlesResponse).bundles), ['spiffe://example.org']);
});

test('a federated bundle reaches every view of a workload whose entry federates with it (FetchX509SVID, both bundle streams, SDS), and leaves them when it stops', async (t) => {
  const cluster = await startCluster('meshid-federation-views-');
  teardown(t).after(() => cluster.cleanup());
  const partner = new TestCa('partner.example');
  teardown(t).after(() => partner.dispose());
  await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.example', bundle: bundleToSpiffeJson(partner.bundle()) });
  const entryId = await cluster.createEntry({ spiffeId: 'spiffe://example.org/federated', selectors: [`unix:uid:${process.getuid!()}`], federatesWith: ['partner.example'] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });
  const client = agent.client(20_000);
  const sds = connectSds(agent.socketPath);
  teardown(t).after(() => {
    client.close();
    sds.close();
  });
  const node = envoyNode('federated-sidecar');
  /** Every view the workload has of the trust domains it trusts, as their names (and the partner's roots where given). */
  const views = async (): Promise<Record<string, unknown>> => {
    const svid = await client.fetchX509Svid();
    const secrets = secretsByName(await fetchSecrets(sds, { node, resource_names: ['ALL'] }));
    // NOT_FOUND is the agent's answer for a name the caller has no secret for; any other failure is a fault.
    const partnerSecret = await fetchSecrets(sds, { node, resource_names: [PARTNER] }).then(
      (r) => secretsByName(r).get(PARTNER),
      (err: grpc.ServiceError) => {
        if (err.code === grpc.status.NOT_FOUND) return undefined;
        throw err;
      },
    );
    return {
      svid: Object.keys(svid.federated_bundles ?? {}),
      x509Bundles: Object.keys((await client.fetchX509Bundles()).bundles).sort(),
      jwtBundles: Object.keys((await client.fetchJwtBundles()).bundles).sort(),
      sdsAll: spiffeTrustDomains(secrets.get('ALL')!).map((d) => d.name),
      sdsPartnerRoots: partnerSecret === undefined ? undefined : spiffeTrustDomains(partnerSecret).map((d) => pemToDerList(d.trustBundlePem)),
    };
  };
  /** The views once they show `expected` (the agent applies the server's change when it arrives), or as they were last. */
  const settled = async (expected: Record<string, unknown>): Promise<Record<string, unknown>> => {
    let seen = await views();
    for (let i = 0; i < 100 && JSON.stringify(seen) !== JSON.stringify(expected); i++) {
      await new Promise((r) => setTimeout(r, 100));
      seen = await views();
    }
    return seen;
  };
  const federated = { svid: [PARTNER], x509Bundles: ['spiffe://example.org', PARTNER], jwtBundles: ['spiffe://example.org', PARTNER], sdsAll: ['example.org', 'partner.example'], sdsPartnerRoots: [[partner.rootDer]] };
  assert.deepEqual(await settled(federated), federated);

  // The entry stops federating: the partner leaves every view (its roots vouch for nothing of this workload's).
  await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryId, federates_with: [] }, mask: ['federates_with'] });
  const alone = { svid: [], x509Bundles: ['spiffe://example.org'], jwtBundles: ['spiffe://example.org'], sdsAll: ['example.org'], sdsPartnerRoots: undefined };
  assert.deepEqual(await settled(alone), alone);
});

test('a SPIFFE bundle document holding "keys" twice is refused by the admin API itself (bundle set, federation create), and nothing is stored', async (t) => {
  const cluster = await startCluster('meshid-federation-dup-');
  teardown(t).after(() => cluster.cleanup());
  const one = new TestCa('partner.example');
  const two = new TestCa('partner.example');
  teardown(t).after(() => {
    one.dispose();
    two.dispose();
  });
  // Two documents spliced into one object: a direct API client (not the CLI, which checks too) sends both key lists.
  const keysOf = (json: string): string => JSON.stringify((JSON.parse(json) as { keys: unknown }).keys);
  const doubled = `{\n"keys": ${keysOf(bundleToSpiffeJson(one.bundle()))},\n"keys": ${keysOf(bundleToSpiffeJson(two.bundle()))}\n}`;
  const refused = (err: unknown): boolean =>
    isMeshidError(err, 'invalid_argument') && /the SPIFFE bundle for partner\.example, line 3: duplicate key "keys" \(first on line 2\)/.test(err.message);
  await assert.rejects(cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.example', bundle: doubled }), refused);
  await assert.rejects(
    cluster.admin.call('Federation', 'CreateFederationRelationship', {
      relationship: { trust_domain: 'partner.example', bundle_endpoint_url: 'https://127.0.0.1:1/bundle', bundle_endpoint_profile: 'https_web' },
      bundle: doubled,
    }),
    refused,
  );
  const stored = (await cluster.admin.call('Bundles', 'ListFederatedBundles', {})) as { bundles?: unknown[] };
  assert.deepEqual(stored.bundles ?? [], []);
  const relationships = (await cluster.admin.call('Federation', 'ListFederationRelationships', {})) as { relationships?: unknown[] };
  assert.deepEqual(relationships.relationships ?? [], []);
  // Control: either half alone is a bundle the server takes.
  await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.example', bundle: `{\n"keys": ${keysOf(bundleToSpiffeJson(two.bundle()))}\n}` });
});

test('an agent restarted after its federated bundle was deleted stops serving it, though its entry federates again', async (t) => {
  const cluster = await startCluster('meshid-federation-stale-');
  teardown(t).after(() => cluster.cleanup());
  const partnerRoot = opensslCa(cluster.dir, 'Partner Root');
  await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.example', bundle: fs.readFileSync(partnerRoot.cert, 'utf8') });
  const entryId = await cluster.createEntry({ spiffeId: 'spiffe://example.org/federated', selectors: [`unix:uid:${process.getuid!()}`], federatesWith: ['partner.example'] });
  const first = await cluster.startAgent({ joinToken: await cluster.token() });
  const bundlesOf = async (agent: typeof first, until: (domains: string[]) => boolean): Promise<string[]> => {
    const client = agent.client(20_000);
    const watch = client.watchX509Bundles();
    try {
      let domains: string[] = [];
      const deadline = Date.now() + 10_000;
      while (!until(domains) && Date.now() < deadline) {
        const next = await Promise.race([watch.next(), new Promise<undefined>((r) => setTimeout(() => r(undefined), deadline - Date.now()))]);
        if (next === undefined || next.done) break;
        domains = Object.keys((next.value as X509BundlesResponse).bundles).sort();
      }
      return domains;
    } finally {
      watch.cancel();
      client.close();
    }
  };
  assert.deepEqual(await bundlesOf(first, (d) => d.includes(PARTNER)), ['spiffe://example.org', PARTNER]);
  await first.stop();

  // While the agent is away: the bundle goes, and a relationship with nothing fetched yet lets the entry federate
  // with the domain again, so the server has no bundle of it to send.
  await cluster.admin.call('Bundles', 'DeleteFederatedBundle', { trust_domain: 'partner.example', mode: 'DISSOCIATE' });
  await cluster.admin.call('Federation', 'CreateFederationRelationship', {
    relationship: { trust_domain: 'partner.example', bundle_endpoint_url: 'https://127.0.0.1:1/', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.example/server' },
  });
  await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryId, federates_with: ['partner.example'] }, mask: ['federates_with'] });

  const again = await cluster.startAgent({ dataDir: first.dataDir });
  assert.deepEqual(await bundlesOf(again, (d) => d.length > 0 && !d.includes(PARTNER)), ['spiffe://example.org'], 'the deleted roots are no longer trusted');
});

test('a partner revoking every key at its bundle endpoint reaches the workload: its roots are withdrawn, its JWT key set emptied', async (t) => {
  const cluster = await startCluster('meshid-federation-revoke-');
  teardown(t).after(() => cluster.cleanup());
  const partner = new TestCa('partner.example');
  teardown(t).after(() => partner.dispose());
  const endpoint = await partnerEndpoint(t, partner);
  const seed = bundleToSpiffeJson({ ...partner.bundle(), jwtAuthorities: [{ kid: 'k1', publicKey: jobFreeKeyPair('ec', { namedCurve: 'P-256' }).publicKey }] });
  endpoint.body = seed;
  await federateThroughEndpoint(cluster, endpoint, seed);
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });
  const client = agent.client(20_000);
  const watch = client.watchX509Bundles();
  teardown(t).after(() => {
    watch.cancel();
    client.close();
  });
  const message = await bundlesWith(watch, PARTNER);
  assert.deepEqual(splitConcatenatedDer(message.bundles[PARTNER]!), [partner.rootDer]);
  assert.deepEqual(jwtKids((await client.fetchJwtBundles()).bundles[PARTNER]), ['k1']);

  // Bundle §4.1.3: {"keys": []} revokes every key. The poll stores it, and the refresh tells the operator what now.
  endpoint.body = '{"keys": []}';
  await assert.rejects(
    cluster.admin.call('Federation', 'RefreshBundle', { trust_domain: 'partner.example' }),
    (err) => isMeshidError(err, 'failed_precondition') && /partner\.example is trusted for nothing, .*meshid-server bundle set --trust-domain partner\.example/.test(err.message),
  );
  const next = await event("a FetchX509Bundles message after the partner's revocation", watch.next(), 20_000);
  assert.equal(next.done, false, 'the stream goes on: the workload keeps its own identity');
  assert.deepEqual(Object.keys((next.value as X509BundlesResponse).bundles), ['spiffe://example.org'], 'no stale partner roots');
  assert.deepEqual(jwtKids((await client.fetchJwtBundles()).bundles[PARTNER]), [], 'an empty key set: no token of partner.example is valid');
  const listed = (await cluster.admin.call('Bundles', 'ListFederatedBundles', {})).bundles ?? [];
  const stored = listed.find((b) => b.trust_domain === 'partner.example')!;
  assert.deepEqual([stored.x509_authorities ?? [], stored.jwt_authorities ?? []], [[], []]);
  const relationship = await cluster.admin.call('Federation', 'GetFederationRelationship', { trust_domain: 'partner.example' });
  assert.match(String(relationship.last_error), /meshid-server bundle set --trust-domain partner\.example/);
});

/** The first FetchX509Bundles message of `watch` holding `trustDomain`'s bundle. */
function bundlesWith(watch: AsyncIterator<X509BundlesResponse>, trustDomain: string): Promise<X509BundlesResponse> {
  return event(
    `a FetchX509Bundles message holding ${trustDomain}`,
    (async () => {
      for (;;) {
        const next = await watch.next();
        assert.equal(next.done, false, 'the stream stays open');
        if (next.value.bundles[trustDomain] !== undefined) return next.value;
      }
    })(),
    20_000,
  );
}

/** The kids of a Workload API JWT bundle (a JWK Set as UTF-8 JSON). */
function jwtKids(jwks: Buffer | undefined): string[] {
  assert.ok(jwks !== undefined, 'the trust domain is listed');
  return (JSON.parse(jwks.toString('utf8')) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
}
