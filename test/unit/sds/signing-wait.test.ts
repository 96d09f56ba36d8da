/**
 * An SDS first answer waits for the caller's SVIDs still being signed, as the Workload API's first X.509 message
 * does, and for nothing else: not for unknown names, another workload's identity, or a signing that failed and is
 * retried; not past its window or the call's deadline; and a waiting stream holds up no other stream. The waits are
 * timed by a FakeClock set an hour behind real time; attestation is stubbed (x-test-selector header).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { SDS_SIGNING_WAIT_MS } from '../../../src/agent/sds/signing-wait.js';
import { decodeDeltaResources, DeltaClient, envoyNode, fetchSecrets, secretsByName, SotwClient, type DiscoveryResponse } from '../../support/sds-client.js';
import { APP_A2, APP_B, as, eventually, registerA, SELECTOR_A, SELECTOR_B, trustDomainsForSuite, type SdsHarness } from './sds-harness.js';
import type { FakeSdsCache } from '../../support/fake-sds-cache.js';

const WAIT_MS = SDS_SIGNING_WAIT_MS;

function names(response: DiscoveryResponse): string[] {
  return [...secretsByName(response).keys()].sort();
}

/** Workload A holds APP_A; APP_A2, its second identity, is being signed. Workload B holds APP_B. */
function aSigningA2(c: FakeSdsCache): void {
  registerA(c);
  c.addEntry(SELECTOR_A, APP_A2, { issued: false });
  c.addEntry(SELECTOR_B, APP_B);
}

/** Until the handler has looked at the caller's state for a request: then whether it answered is known. */
async function handled(h: SdsHarness, snapshotCallsBefore: number): Promise<void> {
  await eventually(() => h.cache.snapshotCalls > snapshotCallsBefore, 'the request to be handled');
}

function fetchWithDeadline(h: SdsHarness, request: Record<string, unknown>, deadlineMs: number): Promise<DiscoveryResponse> {
  const fn = (h.client as unknown as Record<string, Function>)['FetchSecrets']!;
  return new Promise((resolve, reject) => {
    fn.call(h.client, request, as(SELECTOR_A), { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: DiscoveryResponse) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** What a call started without waiting for it comes to: `answer` is its response, or its error, once it has ended. */
function outcome(call: Promise<DiscoveryResponse>): { answer?: DiscoveryResponse | grpc.ServiceError } {
  const got: { answer?: DiscoveryResponse | grpc.ServiceError } = {};
  call.then(
    (r) => (got.answer = r),
    (err: grpc.ServiceError) => (got.answer = err),
  );
  return got;
}

describe('SDS first answers wait for SVIDs being signed (stubbed attestation)', () => {
  const { withHarness } = trustDomainsForSuite();
  const newClock = (): FakeClock => new FakeClock(Date.now() - 3_600_000);

  it('StreamSecrets: the first response waits for a named SVID being signed and carries it, in one push', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      const before = h.cache.snapshotCalls;
      client.subscribe(['default', APP_A2, 'ROOTCA']);
      await handled(h, before);
      assert.equal(h.service.stats().responses, 0, 'nothing sent while APP_A2 is being signed');

      // Another stream of the same workload, and another workload's, are answered meanwhile.
      const other = new SotwClient(h.client, as(SELECTOR_A));
      other.subscribe(['default']);
      assert.deepEqual(names(await other.next()), ['default']);
      const b = new SotwClient(h.client, as(SELECTOR_B));
      b.subscribe(['default']);
      assert.deepEqual(names(await b.next()), ['default']);

      h.cache.rotate(APP_A2); // signed
      const r1 = await client.next();
      assert.deepEqual(names(r1), ['ROOTCA', APP_A2, 'default'].sort());
      assert.ok(r1.nonce && r1.version_info);
      client.ack(r1, ['default', APP_A2, 'ROOTCA']);
      await eventually(() => h.service.stats().acks === 1, 'the ACK');
      assert.equal(client.received.length, 1, 'no second push for APP_A2');
      for (const c of [client, other, b]) c.cancel();
    }, {}, { clock });
  });

  it('DeltaSecrets: the first response waits for a named SVID being signed and carries it', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      const before = h.cache.snapshotCalls;
      client.request({ node: envoyNode(), subscribe: [APP_A2, 'ROOTCA'] });
      await handled(h, before);
      assert.equal(h.service.stats().responses, 0);
      h.cache.rotate(APP_A2);
      const r1 = await client.next();
      assert.deepEqual(decodeDeltaResources(r1).map((r) => r.name).sort(), [APP_A2, 'ROOTCA'].sort());
      assert.deepEqual(r1.removed_resources ?? [], []);
      client.cancel();
    }, {}, { clock });
  });

  it('a wildcard first response waits for every SVID of the caller being signed, as a first FetchX509SVID does', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      const before = h.cache.snapshotCalls;
      client.subscribe([]);
      await handled(h, before);
      assert.equal(h.service.stats().responses, 0);
      h.cache.rotate(APP_A2);
      assert.ok(names(await client.next()).includes(APP_A2));
      client.cancel();
    }, {}, { clock });
  });

  it('unknown names, another workload\'s identity and a signing that failed are not waited for: the response goes at once', async () => {
    const clock = newClock();
    await withHarness(
      (c) => {
        aSigningA2(c);
        c.addEntry(SELECTOR_A, 'spiffe://example.org/failing', { issued: false, signingFailed: true });
      },
      async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe(['default', APP_B, 'spiffe://example.org/nobody', 'no-such-alias', 'spiffe://example.org/failing']);
        assert.deepEqual(names(await client.next()), ['default']);
        // The unary form: NOT_FOUND at once, as before (SPEC-NOTES §12).
        await assert.rejects(fetchSecrets(h.client, { resource_names: ['default', 'spiffe://example.org/nobody'] }, as(SELECTOR_A)), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
        client.cancel();
      },
      {},
      { clock },
    );
  });

  it('once the window is over the first response goes with what there is, and the late SVID is pushed when signed', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      const before = h.cache.snapshotCalls;
      client.subscribe(['default', APP_A2]);
      await handled(h, before);
      clock.advance(WAIT_MS - 1);
      assert.equal(h.service.stats().responses, 0);
      clock.advance(1);
      const r1 = await client.next();
      assert.deepEqual(names(r1), ['default']);
      client.ack(r1, ['default', APP_A2]);
      h.cache.rotate(APP_A2);
      const r2 = await client.next();
      assert.deepEqual(names(r2), [APP_A2, 'default'].sort());
      assert.notEqual(r2.nonce, r1.nonce);
      client.cancel();
    }, {}, { clock });
  });

  it('FetchSecrets waits for a named SVID being signed and answers with it instead of NOT_FOUND', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const got = outcome(fetchSecrets(h.client, { resource_names: [APP_A2, 'default'] }, as(SELECTOR_A)));
      await eventually(() => h.cache.listenerCount() === 1, 'the fetch to wait');
      assert.equal(got.answer, undefined);
      h.cache.rotate(APP_A2);
      await eventually(() => got.answer !== undefined, 'the answer');
      const answer = got.answer!;
      assert.ok(!(answer instanceof Error), String(answer));
      assert.deepEqual(names(answer), [APP_A2, 'default'].sort());
      assert.equal(h.cache.listenerCount(), 0, 'the wait let go of its subscription');
    }, {}, { clock });
  });

  it('FetchSecrets naming an SVID being signed and a name that will not resolve is NOT_FOUND at once: waiting could not make it succeed', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const got = outcome(fetchSecrets(h.client, { resource_names: [APP_A2, 'spiffe://example.org/nobody'] }, as(SELECTOR_A)));
      await eventually(() => got.answer !== undefined || h.cache.listenerCount() === 1, 'the fetch to be answered or to wait');
      const waited = h.cache.listenerCount() === 1;
      clock.advance(WAIT_MS); // lets a fetch that waited end, so the check below fails alone
      await eventually(() => got.answer !== undefined, 'the answer');
      assert.equal(waited, false, 'answered without waiting for APP_A2');
      assert.equal((got.answer as grpc.ServiceError).code, grpc.status.NOT_FOUND);
    }, {}, { clock });
  });

  it('FetchSecrets naming the caller\'s own SVID whose signing failed and is retried is UNAVAILABLE at once (retry), not NOT_FOUND (a wrong name)', async () => {
    const clock = newClock();
    const failing = 'spiffe://example.org/failing';
    await withHarness(
      (c) => {
        c.addEntry(SELECTOR_A, failing, { issued: false, signingFailed: true });
        c.addEntry(SELECTOR_A, APP_A2);
        c.addEntry(SELECTOR_B, APP_B);
      },
      async (h) => {
        // The default (the oldest entry's) and the name itself: both the caller's, both retried.
        for (const names of [[failing], ['default'], [failing, 'default', APP_A2]]) {
          const refused = await fetchSecrets(h.client, { resource_names: names }, as(SELECTOR_A)).then(() => undefined, (err: grpc.ServiceError) => err);
          assert.equal(refused?.code, grpc.status.UNAVAILABLE, `${names.join(', ')}: ${refused?.details}`);
          assert.match(refused.details, /its signing failed and is retried; the agent's log says why\); retry$/);
        }
        assert.equal(h.cache.listenerCount(), 0, 'nothing waited: a failed signing is not waited for');
        // Mixed with a name that does not resolve, or asked by another workload: NOT_FOUND, nothing revealed.
        const mixed = await fetchSecrets(h.client, { resource_names: [failing, 'spiffe://example.org/nobody'] }, as(SELECTOR_A)).then(() => undefined, (err: grpc.ServiceError) => err);
        assert.equal(mixed?.code, grpc.status.NOT_FOUND);
        const other = await fetchSecrets(h.client, { resource_names: [failing] }, as(SELECTOR_B)).then(() => undefined, (err: grpc.ServiceError) => err);
        assert.equal(other?.code, grpc.status.NOT_FOUND);
      },
      {},
      { clock },
    );
  });

  it('FetchSecrets whose wait ends with a named SVID of the caller\'s still being signed is UNAVAILABLE (retry) naming it, not NOT_FOUND (a wrong name)', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const got = outcome(fetchSecrets(h.client, { resource_names: [APP_A2, 'default'] }, as(SELECTOR_A)));
      await eventually(() => h.cache.listenerCount() === 1, 'the fetch to wait');
      clock.advance(WAIT_MS);
      await eventually(() => got.answer !== undefined, 'the answer');
      const refused = got.answer as grpc.ServiceError;
      assert.equal(refused.code, grpc.status.UNAVAILABLE, refused.details);
      assert.equal(refused.details, `the SVID for ${JSON.stringify(APP_A2)} is still being signed; retry`);

      // Another workload's identity, being signed or not, is still NOT_FOUND, as an unknown name: nothing revealed.
      const other = await fetchSecrets(h.client, { resource_names: [APP_A2] }, as(SELECTOR_B)).then(() => undefined, (err: grpc.ServiceError) => err);
      assert.equal(other?.code, grpc.status.NOT_FOUND);
    }, {}, { clock });
  });

  it('a FetchSecrets waiting for an SVID being signed is answered with what there is when the agent shuts down, not left to the transport\'s grace', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      const got = outcome(fetchSecrets(h.client, { resource_names: [APP_A2, 'default'] }, as(SELECTOR_A)));
      await eventually(() => h.cache.listenerCount() === 1, 'the fetch to wait');
      h.service.close();
      assert.equal(h.cache.listenerCount(), 0, 'the wait let go of its subscription');
      await eventually(() => got.answer !== undefined, 'the answer');
      assert.equal((got.answer as grpc.ServiceError).code, grpc.status.UNAVAILABLE, 'APP_A2 is still being signed: retry');
    }, {}, { clock });
  });

  it('FetchSecrets answers what there is before its deadline, and a cancelled one leaves no wait behind', async () => {
    const clock = newClock();
    await withHarness(aSigningA2, async (h) => {
      // A window longer than the deadline: the deadline bounds the wait (it ends at 90 % of the time left).
      const got = outcome(fetchWithDeadline(h, { resource_names: [APP_A2] }, 60_000));
      await eventually(() => h.cache.listenerCount() === 1, 'the fetch to wait');
      clock.advance(55_000);
      await eventually(() => got.answer !== undefined, 'the answer before the deadline');
      assert.equal((got.answer as grpc.ServiceError).code, grpc.status.UNAVAILABLE, 'still being signed: retry');

      const fn = (h.client as unknown as Record<string, Function>)['FetchSecrets']!;
      const call = fn.call(h.client, { resource_names: [APP_A2] }, as(SELECTOR_A), () => {}) as grpc.ClientUnaryCall;
      await eventually(() => h.cache.listenerCount() === 1, 'the fetch to wait');
      call.cancel();
      await eventually(() => h.cache.listenerCount() === 0, 'the cancelled fetch to stop waiting');
    }, {}, { clock, signingWaitMs: 120_000 });
  });

  it('DeltaSecrets resumed with every version current: a rotation is not held for a sibling SVID being signed', async () => {
    const clock = newClock();
    await withHarness(registerA, async (h) => {
      const first = new DeltaClient(h.client, as(SELECTOR_A));
      first.request({ node: envoyNode(), subscribe: [] });
      const held = Object.fromEntries(decodeDeltaResources(await first.next()).map((r) => [r.name, r.version]));
      first.cancel();
      // A reconnect (Envoy's): the legacy wildcard, declaring what it holds; all current, so nothing to send.
      const resumed = new DeltaClient(h.client, as(SELECTOR_A));
      const before = h.cache.snapshotCalls;
      resumed.request({ node: envoyNode(), subscribe: [], initialVersions: held });
      await handled(h, before);
      assert.equal(h.service.stats().responses, 1);
      // The Envoy holds its secrets: its first answer is over. A rotation must not wait for a new sibling's signing.
      h.cache.addEntry(SELECTOR_A, APP_A2, { issued: false });
      h.cache.rotate('spiffe://example.org/ns/default/sa/frontend');
      const r = await resumed.next();
      assert.ok(decodeDeltaResources(r).some((x) => x.name === 'default'), 'the rotated default SVID is pushed');
      resumed.cancel();
    }, {}, { clock });
  });
});
