import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { toStruct } from '../../../src/common/grpc/proto.js';
import type { FakeSdsCache } from '../../support/fake-sds-cache.js';
import { dataSourceText, envoyNode, fetchSecrets, SECRET_TYPE_URL, secretsByName, spiffeTrustDomains } from '../../support/sds-client.js';
import { APP_A, APP_B, as, SELECTOR_A, SELECTOR_B, TD, trustDomainsForSuite, UNREGISTERED } from './sds-harness.js';

async function rejection(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  assert.fail('expected the call to fail');
}

describe('SDS FetchSecrets (stubbed attestation)', () => {
  const { withHarness } = trustDomainsForSuite();

  const register = (c: FakeSdsCache): void => {
    c.addEntry(SELECTOR_A, APP_A);
    c.addEntry(SELECTOR_B, APP_B);
  };

  it('returns the current secrets for the named resources, under the Secret type URL', async () => {
    await withHarness(register, async (h) => {
      const response = await fetchSecrets(h.client, { node: envoyNode(), resource_names: ['default', 'ROOTCA', APP_A] }, as(SELECTOR_A));
      assert.equal(response.type_url, SECRET_TYPE_URL);
      assert.ok(response.version_info);
      const secrets = secretsByName(response);
      assert.deepEqual([...secrets.keys()], ['default', 'ROOTCA', APP_A]);
      assert.equal(dataSourceText(secrets.get('default')?.tls_certificate?.certificate_chain), dataSourceText(secrets.get(APP_A)?.tls_certificate?.certificate_chain));
      assert.deepEqual(spiffeTrustDomains(secrets.get('ROOTCA')!).map((d) => d.name), [TD]);

      // Same content, same version: a second fetch agrees; a rotation changes it.
      const again = await fetchSecrets(h.client, { node: envoyNode(), resource_names: ['default', 'ROOTCA', APP_A] }, as(SELECTOR_A));
      assert.equal(again.version_info, response.version_info);
      h.cache.rotate(APP_A);
      const rotated = await fetchSecrets(h.client, { node: envoyNode(), resource_names: ['default', 'ROOTCA', APP_A] }, as(SELECTOR_A));
      assert.notEqual(rotated.version_info, response.version_info);
    });
  });

  it('honours the node metadata of the request', async () => {
    await withHarness(register, async (h) => {
      const node = envoyNode('n', { metadata: toStruct({ disable_spiffe_cert_validation: true }) });
      const response = await fetchSecrets(h.client, { node, resource_names: ['ROOTCA'] }, as(SELECTOR_A));
      const rootca = secretsByName(response).get('ROOTCA')!;
      assert.match(dataSourceText(rootca.validation_context?.trusted_ca), /^-----BEGIN CERTIFICATE-----/);
    });
  });

  it('an unknown name and another workload\'s identity both fail with the same NOT_FOUND, serving nothing', async () => {
    await withHarness(register, async (h) => {
      const notEntitled = await rejection(fetchSecrets(h.client, { resource_names: ['default', APP_B] }, as(SELECTOR_A)));
      const unknown = await rejection(fetchSecrets(h.client, { resource_names: ['default', 'spiffe://example.org/nobody'] }, as(SELECTOR_A)));
      assert.equal(notEntitled.code, status.NOT_FOUND);
      assert.equal(unknown.code, status.NOT_FOUND);
      assert.equal(notEntitled.details.replace(APP_B, 'X'), unknown.details.replace('spiffe://example.org/nobody', 'X'));
    });
  });

  it('an empty name list returns every secret the caller is entitled to (ALL only with the SPIFFE validator)', async () => {
    await withHarness(register, async (h) => {
      const response = await fetchSecrets(h.client, { node: envoyNode(), resource_names: [] }, as(SELECTOR_B));
      assert.deepEqual([...secretsByName(response).keys()].sort(), ['ALL', 'ROOTCA', APP_B, `spiffe://${TD}`, 'default'].sort());
      // Without a node the validator is SPIRE's default too, so ALL is there.
      const noNode = await fetchSecrets(h.client, { resource_names: [] }, as(SELECTOR_B));
      assert.deepEqual([...secretsByName(noNode).keys()].sort(), ['ALL', 'ROOTCA', APP_B, `spiffe://${TD}`, 'default'].sort());
      const oldEnvoy = envoyNode('old', { user_agent_build_version: { version: { major_number: 1, minor_number: 17 } } });
      const withoutValidator = await fetchSecrets(h.client, { node: oldEnvoy, resource_names: [] }, as(SELECTOR_B));
      assert.deepEqual([...secretsByName(withoutValidator).keys()].sort(), ['ROOTCA', APP_B, `spiffe://${TD}`, 'default'].sort());
    });
  });

  it('refuses an unregistered caller, another type_url, 10,000 names and a malformed SPIFFE ID', async () => {
    await withHarness(register, async (h) => {
      assert.equal((await rejection(fetchSecrets(h.client, { resource_names: ['default'] }, as(UNREGISTERED)))).code, status.PERMISSION_DENIED);
      const wrongType = { resource_names: ['default'], type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' };
      assert.equal((await rejection(fetchSecrets(h.client, wrongType, as(SELECTOR_A)))).code, status.INVALID_ARGUMENT);
      const many = { resource_names: Array.from({ length: 10_000 }, (_, i) => `n${i}`) };
      assert.equal((await rejection(fetchSecrets(h.client, many, as(SELECTOR_A)))).code, status.INVALID_ARGUMENT);
      const malformed = { resource_names: ['spiffe://example.org/a/../b'] };
      assert.equal((await rejection(fetchSecrets(h.client, malformed, as(SELECTOR_A)))).code, status.INVALID_ARGUMENT);
      assert.equal(h.service.stats().fetches, 0);
    });
  });
});
