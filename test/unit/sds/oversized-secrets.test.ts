import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { envoyNode, fetchSecrets, SotwClient } from '../../support/sds-client.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { as, registerAFederatingLarge, SELECTOR_A, startSdsHarness, trustDomainsForSuite } from './sds-harness.js';

const FOUR_MIB = 4 * 1024 * 1024;

describe('SDS responses over the 4 MiB gRPC clients take (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  it('a StreamSecrets or FetchSecrets answer the client refuses as too large is logged as a warning naming the rpc and size', async () => {
    // `ALL` over eight federated trust domains of ~0.7 MB of roots each (copies of one root: size is what counts):
    // one secret of ~5.6 MB, which no state-of-the-world answer can cut.
    const domains = Array.from({ length: 8 }, (_, i) => `fed${i}.example`);
    const { log, records } = capturingLogger('agent');
    const h = await startSdsHarness(
      suite.ca,
      registerAFederatingLarge(suite.foreign, domains),
      {},
      log,
    );
    try {
      const stream = new SotwClient(h.client, as(SELECTOR_A));
      stream.subscribe(['ALL']);
      const ended = await stream.status;
      assert.equal(ended.code, status.RESOURCE_EXHAUSTED, 'grpc-js refuses it by default, as Envoy\'s google_grpc does');
      await assert.rejects(fetchSecrets(h.client, { node: envoyNode(), resource_names: ['ALL'] }, as(SELECTOR_A)), (err: ServiceError) => err.code === status.RESOURCE_EXHAUSTED);

      const warnings = records().filter((r) => r.level === LEVEL.warn && /larger than the 4 MiB/.test(r.msg));
      assert.deepEqual(warnings.map((w) => w['rpc']).sort(), ['FetchSecrets', 'StreamSecrets']);
      for (const w of warnings) {
        assert.ok((w['bytes'] as number) > FOUR_MIB, JSON.stringify(w));
        assert.equal(w['count'], 1);
        assert.equal(w['subsystem'], 'sds');
      }
    } finally {
      await h.close();
    }
  });
});
