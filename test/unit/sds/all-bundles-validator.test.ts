/**
 * `ALL` (own + federated trust domains in one validation context) is served only with Envoy's SPIFFE certificate
 * validator, as SPIRE's agent does: merged into one `trusted_ca`, a federated root would vouch for any SPIFFE ID in
 * any trust domain. Without the validator, asking for it is FAILED_PRECONDITION on all three RPCs, and a wildcard
 * subscription leaves it out.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { isMeshidError } from '../../../src/common/errors.js';
import { toStruct } from '../../../src/common/grpc/proto.js';
import { buildSecret } from '../../../src/agent/sds/secret-builder.js';
import type { SdsOptions } from '../../../src/agent/sds/sds-options.js';
import type { FakeSdsCache } from '../../support/fake-sds-cache.js';
import {
  dataSourceText,
  decodeDeltaResources,
  type DecodedSecret,
  DeltaClient,
  envoyNode,
  fetchSecrets,
  pemBlocks,
  secretsByName,
  SotwClient,
  spiffeTrustDomains,
} from '../../support/sds-client.js';
import { APP_A, as, FOREIGN_TD, SELECTOR_A, TD, trustDomainsForSuite, type SdsHarness } from './sds-harness.js';

/** An Envoy that opted out of the SPIFFE validator in its node metadata (SPIRE's key). */
const OPTED_OUT = envoyNode('opted-out', { metadata: toStruct({ disable_spiffe_cert_validation: true }) });
/** An Envoy older than the SPIFFE validator. */
const ENVOY_1_17 = envoyNode('old', { user_agent_build_version: { version: { major_number: 1, minor_number: 17, patch: 0 } } });

/** A stream's error (or the next() that found none) is FAILED_PRECONDITION. */
const failedPrecondition = (err: Partial<ServiceError>): boolean => err.code === status.FAILED_PRECONDITION;

const REFUSED = /^"ALL" \(every trust domain's roots in one validation context\) is served only with Envoy's SPIFFE certificate validator/;

/** The roots of a trusted_ca validation context. */
function trustedCaRoots(secret: DecodedSecret | undefined): Buffer[] {
  assert.equal(secret?.validation_context?.custom_validator_config, undefined, 'trusted_ca form');
  return pemBlocks(dataSourceText(secret?.validation_context?.trusted_ca));
}

describe('SDS ALL without the SPIFFE validator (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  /** A caller that federates with FOREIGN_TD: its ALL would hold both trust domains. */
  const federated = (c: FakeSdsCache): void => {
    c.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
    c.setFederatedBundle(suite.foreign.bundle());
  };

  const withHarness = (body: (h: SdsHarness) => Promise<void>, options?: SdsOptions): Promise<void> => suite.withHarness(federated, body, options);

  describe('StreamSecrets', () => {
    for (const [label, node] of [['node metadata disable_spiffe_cert_validation', OPTED_OUT], ['Envoy 1.17', ENVOY_1_17]] as const) {
      it(`${label}: ALL on the first request ends the stream with FAILED_PRECONDITION and sends nothing`, async () => {
        await withHarness(async (h) => {
          const client = new SotwClient(h.client, as(SELECTOR_A));
          client.subscribe(['default', 'ALL'], node);
          await assert.rejects(client.next(), failedPrecondition);
          const end = await client.status;
          assert.equal(end.code, status.FAILED_PRECONDITION);
          assert.match(end.details, REFUSED);
          assert.equal(client.received.length, 0, 'no secret at all, not even default');
          assert.equal(h.service.stats().rejectedRequests, 1);
        });
      });
    }

    it('ALL added to a trusted_ca subscription later ends the stream the same way', async () => {
      await withHarness(async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe(['ROOTCA'], OPTED_OUT);
        const r1 = await client.next();
        assert.deepEqual(trustedCaRoots(secretsByName(r1).get('ROOTCA')), [suite.ca.rootDer], 'one trust domain is fine');
        client.ack(r1, ['ROOTCA', 'ALL']);
        await assert.rejects(client.next(), failedPrecondition);
        const end = await client.status;
        assert.equal(end.code, status.FAILED_PRECONDITION);
        assert.match(end.details, /node metadata sets disable_spiffe_cert_validation to true/);
        assert.equal(client.received.length, 1);
      });
    });

    it('the agent option: ALL is refused with a message naming the option', async () => {
      await withHarness(
        async (h) => {
          const client = new SotwClient(h.client, as(SELECTOR_A));
          client.subscribe(['ALL'], envoyNode());
          await assert.rejects(client.next(), failedPrecondition);
          const end = await client.status;
          assert.equal(end.code, status.FAILED_PRECONDITION);
          assert.match(end.details, /agent option sds\.disable_spiffe_cert_validation is set/);
        },
        { disableSpiffeCertValidation: true },
      );
    });

    it('a trusted_ca wildcard holds every trust domain under its own name, never ALL', async () => {
      await withHarness(async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe([], ENVOY_1_17);
        const secrets = secretsByName(await client.next());
        assert.deepEqual([...secrets.keys()].sort(), ['ROOTCA', APP_A, `spiffe://${TD}`, `spiffe://${FOREIGN_TD}`, 'default'].sort());
        assert.deepEqual(trustedCaRoots(secrets.get(`spiffe://${FOREIGN_TD}`)), [suite.foreign.rootDer]);
        for (const name of ['ROOTCA', `spiffe://${TD}`]) assert.deepEqual(trustedCaRoots(secrets.get(name)), [suite.ca.rootDer], name);
        client.cancel();
      });
    });

    it('with the SPIFFE validator ALL is still served, one trust bundle per trust domain', async () => {
      await withHarness(async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe(['ALL'], envoyNode());
        const all = secretsByName(await client.next()).get('ALL')!;
        assert.deepEqual(spiffeTrustDomains(all).map((d) => d.name), [TD, FOREIGN_TD].sort());
        client.cancel();
      });
    });
  });

  describe('DeltaSecrets', () => {
    it('subscribing ALL without the validator ends the stream with FAILED_PRECONDITION, first request or later', async () => {
      await withHarness(async (h) => {
        const first = new DeltaClient(h.client, as(SELECTOR_A));
        first.request({ node: ENVOY_1_17, subscribe: ['ALL', 'default'] });
        await assert.rejects(first.next(), failedPrecondition);
        const end1 = await first.status;
        assert.match(end1.details, REFUSED);
        assert.match(end1.details, /reports Envoy 1\.17, which has no SPIFFE certificate validator.*upgrade Envoy to 1\.18 or later/);

        const later = new DeltaClient(h.client, as(SELECTOR_A));
        later.request({ node: OPTED_OUT, subscribe: ['ROOTCA'] });
        const r1 = await later.next();
        assert.deepEqual(trustedCaRoots(decodeDeltaResources(r1)[0]?.secret), [suite.ca.rootDer]);
        later.request({ nonce: r1.nonce ?? '', subscribe: ['ALL'] });
        await assert.rejects(later.next(), failedPrecondition);
        const end2 = await later.status;
        assert.equal(end2.code, status.FAILED_PRECONDITION);
        assert.match(end2.details, REFUSED);
      });
    });

    it('a trusted_ca wildcard never sends ALL; a reconnect that declares it held gets it removed', async () => {
      await withHarness(async (h) => {
        const client = new DeltaClient(h.client, as(SELECTOR_A));
        client.request({ node: OPTED_OUT, initialVersions: { ALL: 'held-from-an-earlier-stream' } });
        const r1 = await client.next();
        const sent = decodeDeltaResources(r1);
        assert.ok(!sent.some((r) => r.name === 'ALL'), 'ALL is not sent');
        assert.deepEqual(r1.removed_resources, ['ALL']);
        for (const r of sent) {
          if (r.secret.validation_context !== undefined) assert.equal(trustedCaRoots(r.secret).length, 1, `${r.name} holds one trust domain`);
        }
        client.cancel();
      });
    });
  });

  describe('FetchSecrets', () => {
    it('ALL without the validator is FAILED_PRECONDITION with what to change; other names of the request are not served', async () => {
      await withHarness(async (h) => {
        const err = await fetchSecrets(h.client, { node: OPTED_OUT, resource_names: ['ROOTCA', 'ALL'] }, as(SELECTOR_A)).then(
          () => assert.fail('ALL was served as trusted_ca'),
          (e: ServiceError) => e,
        );
        assert.equal(err.code, status.FAILED_PRECONDITION);
        assert.match(err.details, REFUSED);
        assert.match(err.details, /remove disable_spiffe_cert_validation from the node metadata or set it to false/);
        assert.match(err.details, /To trust only your own trust domain, ask for "ROOTCA" instead$/);
        assert.equal(h.service.stats().rejectedRequests, 1);
      });
    });

    it('a request without a node gets the SPIFFE validator, as from SPIRE, so ALL is served; the agent option still refuses it', async () => {
      await withHarness(async (h) => {
        const all = secretsByName(await fetchSecrets(h.client, { resource_names: ['ALL'] }, as(SELECTOR_A))).get('ALL')!;
        assert.deepEqual(spiffeTrustDomains(all).map((d) => d.name), [TD, FOREIGN_TD].sort());
      });
      await withHarness(
        async (h) => {
          const err = await fetchSecrets(h.client, { resource_names: ['ALL'] }, as(SELECTOR_A)).then(
            () => assert.fail('ALL was served as trusted_ca'),
            (e: ServiceError) => e,
          );
          assert.equal(err.code, status.FAILED_PRECONDITION);
          assert.match(err.details, /agent option sds\.disable_spiffe_cert_validation is set/);
        },
        { disableSpiffeCertValidation: true },
      );
    });

    it('an empty name list without the validator returns every trust domain under its own name, not ALL', async () => {
      await withHarness(async (h) => {
        const secrets = secretsByName(await fetchSecrets(h.client, { node: ENVOY_1_17, resource_names: [] }, as(SELECTOR_A)));
        assert.ok(!secrets.has('ALL'));
        assert.deepEqual(trustedCaRoots(secrets.get(`spiffe://${FOREIGN_TD}`)), [suite.foreign.rootDer]);
        assert.deepEqual(trustedCaRoots(secrets.get('ROOTCA')), [suite.ca.rootDer]);
        const withValidator = secretsByName(await fetchSecrets(h.client, { node: envoyNode(), resource_names: [] }, as(SELECTOR_A)));
        assert.deepEqual(spiffeTrustDomains(withValidator.get('ALL')!).map((d) => d.name), [TD, FOREIGN_TD].sort());
      });
    });
  });

  it('the secret builder itself never merges trust domains into one trusted_ca (internal), whoever asks', () => {
    const merged = { kind: 'validation_context', bundles: [suite.ca.bundle(), suite.foreign.bundle()] } as const;
    assert.throws(() => buildSecret('ALL', merged, 'trusted_ca'), (err: unknown) => isMeshidError(err, 'internal'));
    assert.doesNotThrow(() => buildSecret('ALL', merged, 'spiffe'));
    assert.doesNotThrow(() => buildSecret('ROOTCA', { kind: 'validation_context', bundles: [suite.ca.bundle()] }, 'trusted_ca'));
    // Nor sends a trusted_ca with no roots, which Envoy refuses to load (its listener or cluster fails as a whole).
    assert.throws(() => buildSecret('ROOTCA', { kind: 'validation_context', bundles: [] }, 'trusted_ca'), (err: unknown) => isMeshidError(err, 'internal'));
  });
});
