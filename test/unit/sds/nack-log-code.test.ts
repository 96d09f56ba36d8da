/**
 * The NACK log line names Envoy's status code beside its detail (sotw-stream.test.ts has the detail and its cut): a
 * code an operator can tell an INTERNAL from an INVALID_ARGUMENT by.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/common/log.js';
import { SotwClient } from '../../support/sds-client.js';
import { as, eventually, registerA, SELECTOR_A, startSdsHarness, trustDomainsForSuite } from './sds-harness.js';

describe('the NACK log line', () => {
  const suite = trustDomainsForSuite();

  it('names the code Envoy sent with its detail', async () => {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const h = await startSdsHarness(suite.ca, registerA, {}, createLogger({ name: 'test', level: 'debug', pretty: false, destination }));
    try {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA']);
      const r1 = await client.next();
      // SotwClient's NACK carries code 13 (INTERNAL), as Envoy's does for a secret it cannot load.
      client.nack(r1, ['default', 'ROOTCA'], '', 'Failed to load certificate chain from <inline>');
      await eventually(() => lines.some((l) => l.includes('NACK')), 'the NACK log line');
      const nack = JSON.parse(lines.find((l) => l.includes('NACK'))!) as Record<string, unknown>;
      assert.equal(nack['code'], 13);
      assert.equal(nack['detail'], 'Failed to load certificate chain from <inline>');
      client.cancel();
    } finally {
      await h.close();
    }
  });
});
