import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { DeltaClient, envoyNode, fetchSecrets, SotwClient, type CallStatus } from '../../support/sds-client.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { APP_A, APP_B, as, SELECTOR_A, startSdsHarness, trustDomainsForSuite, UNREGISTERED, registerA } from './sds-harness.js';

async function fetchStatus(promise: Promise<unknown>): Promise<CallStatus> {
  try {
    await promise;
  } catch (err) {
    return { code: (err as ServiceError).code, details: (err as ServiceError).details };
  }
  assert.fail('expected FetchSecrets to fail');
}

/** The status of each SDS RPC for a caller asking for `default`. */
async function statuses(client: Parameters<typeof fetchSecrets>[0], selector: string): Promise<CallStatus[]> {
  const sotw = new SotwClient(client, as(selector));
  sotw.subscribe(['default']);
  const delta = new DeltaClient(client, as(selector));
  delta.request({ node: envoyNode(), subscribe: ['default'] });
  const fetched = await fetchStatus(fetchSecrets(client, { node: envoyNode(), resource_names: ['default'] }, as(selector)));
  return [await sotw.status, await delta.status, fetched];
}

describe('SDS on an agent serving restored state before its first sync (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();
  const { withHarness } = suite;

  it("the not-synced refusal's log line carries the caller's selectors, as the PERMISSION_DENIED one does, to compare with the entries", async () => {
    const { log, records } = capturingLogger('agent');
    const h = await startSdsHarness(suite.ca, (c) => { registerA(c); c.isSynced = false; }, {}, log);
    try {
      const refused = await fetchStatus(fetchSecrets(h.client, { node: envoyNode(), resource_names: ['default'] }, as(UNREGISTERED)));
      assert.equal(refused.code, status.UNAVAILABLE, refused.details);
      const lines = records().filter((r) => r.msg === 'SDS call refused');
      assert.equal(lines.length, 1, JSON.stringify(records()));
      assert.equal(lines[0]!.level, LEVEL.info);
      assert.deepEqual(lines[0]!['selectors'], [UNREGISTERED]);
    } finally {
      await h.close();
    }
  });

  it('a caller no restored entry matches gets UNAVAILABLE on all three RPCs, not PERMISSION_DENIED: its entry may be newer than that state', async () => {
    await withHarness(
      (c) => {
        registerA(c);
        c.isSynced = false;
      },
      async (h) => {
        for (const s of await statuses(h.client, UNREGISTERED)) {
          assert.equal(s.code, status.UNAVAILABLE, s.details);
          // True after a start on restored state and after a re-attestation under a new agent ID alike.
          assert.equal(s.details, 'the agent has not synced with meshid-server since it started or attested again: no entry it holds matches the caller; retry');
        }
        // A caller the restored state knows is served meanwhile.
        const served = await fetchSecrets(h.client, { node: envoyNode(), resource_names: ['default', APP_A] }, as(SELECTOR_A));
        assert.equal(served.resources?.length, 2);
        // Once synced, the server's word is final: no entry is PERMISSION_DENIED.
        h.cache.isSynced = true;
        for (const s of await statuses(h.client, UNREGISTERED)) assert.equal(s.code, status.PERMISSION_DENIED, s.details);
      },
    );
  });

  it('a FetchSecrets naming an identity no restored entry gives the caller is UNAVAILABLE, not NOT_FOUND: that entry may be newer than the state', async () => {
    await withHarness(
      (c) => {
        registerA(c);
        c.isSynced = false;
      },
      async (h) => {
        const unsynced = await fetchStatus(fetchSecrets(h.client, { node: envoyNode(), resource_names: [APP_B] }, as(SELECTOR_A)));
        assert.equal(unsynced.code, status.UNAVAILABLE, unsynced.details);
        assert.match(unsynced.details, /^the agent has not synced with meshid-server since it started or attested again: no secret for "spiffe:\/\/example\.org\/ns\/default\/sa\/backend".*; retry$/);
        h.cache.isSynced = true;
        const synced = await fetchStatus(fetchSecrets(h.client, { node: envoyNode(), resource_names: [APP_B] }, as(SELECTOR_A)));
        assert.equal(synced.code, status.NOT_FOUND, synced.details);
      },
    );
  });
});
