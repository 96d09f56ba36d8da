/**
 * FetchJWTSVID's own guards after the cache signed (jwt-svid-rpc.ts): the caller is attested again before the tokens
 * go out, and only the identity asked for is handed out whatever the cache returned.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { Selector } from '../../../src/common/spiffe/selector.js';
import { parseSelector } from '../../../src/common/spiffe/selector.js';
import { grpcCode } from '../../../src/agent/cli/workload-client.js';
import { TestCa, type FakeWorkloadCache } from '../../support/fake-workload-cache.js';
import { APP_A, APP_B, SELECTOR_A, SELECTOR_B, startWorkloadHarness, TD } from './workload-harness.js';

type FetchJwtSvids = FakeWorkloadCache['fetchJwtSvids'];

/**
 * A workload harness on a CA of its own (both gone after the test) whose cache's entries `setup` adds and whose
 * fetchJwtSvids is `front`, given the cache's own as `sign`.
 */
async function harnessFronting(t: TestContext, setup: (cache: FakeWorkloadCache) => void, front: (sign: FetchJwtSvids) => FetchJwtSvids) {
  const ca = new TestCa(TD);
  t.after(() => ca.dispose());
  const h = await startWorkloadHarness(ca, setup);
  t.after(() => h.close());
  h.cache.fetchJwtSvids = front(h.cache.fetchJwtSvids.bind(h.cache));
  return h;
}

test('a caller that changed while its JWT-SVIDs were signed gets UNAVAILABLE, not the tokens', async (t) => {
  const h = await harnessFronting(
    t,
    (cache) => {
      cache.addEntry(SELECTOR_A, APP_A);
      cache.addEntry(SELECTOR_B, APP_B);
    },
    (sign) => async (selectors: readonly Selector[], audience: readonly string[], spiffeId?: string) => {
      const tokens = await sign(selectors, audience, spiffeId);
      // The process holding the connection now is another one (the first exec'd a binary of another uid's entry).
      h.caller = [parseSelector(SELECTOR_B)];
      return tokens;
    },
  );
  await assert.rejects(h.client.fetchJwtSvid(['db']), (err: Error) => {
    assert.equal(grpcCode(err), grpc.status.UNAVAILABLE);
    assert.match(err.message, /the calling process changed/);
    return true;
  });
});

test('with a spiffe_id asked for, other identities a cache returns are not handed out', async (t) => {
  const h = await harnessFronting(
    t,
    (cache) => {
      cache.addEntry(SELECTOR_A, APP_A);
      cache.addEntry(SELECTOR_A, APP_B);
    },
    // A cache that gets the filter wrong: every identity of the caller.
    (sign) => async (selectors: readonly Selector[], audience: readonly string[]) => sign(selectors, audience, undefined),
  );
  const res = await h.client.fetchJwtSvid(['db'], APP_B);
  assert.deepEqual(res.svids.map((s) => s.spiffe_id), [APP_B]);
});

test('a caller of more than ten identities gets its JWT-SVIDs without a MaxListeners warning among the logs', async (t) => {
  const ids = Array.from({ length: 12 }, (_, i) => `spiffe://${TD}/app-${i}`);
  const h = await harnessFronting(
    t,
    (cache) => {
      for (const id of ids) cache.addEntry(SELECTOR_A, id);
    },
    // As the agent's cache does: one listener on the call's signal per identity it signs for.
    (sign) => async (selectors: readonly Selector[], audience: readonly string[], spiffeId?: string, _deadline?: number, signal?: AbortSignal) => {
      const listeners = ids.map(() => () => {});
      for (const l of listeners) signal?.addEventListener('abort', l);
      try {
        return await sign(selectors, audience, spiffeId);
      } finally {
        for (const l of listeners) signal?.removeEventListener('abort', l);
      }
    },
  );
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const res = await h.client.fetchJwtSvid(['db']);
  assert.equal(res.svids.length, ids.length);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(warnings.filter((n) => n === 'MaxListenersExceededWarning'), []);
});
