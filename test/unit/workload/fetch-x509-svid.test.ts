import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError, unavailable } from '../../../src/common/errors.js';
import { splitConcatenatedDer } from '../../../src/common/x509/pem.js';
import { grpcCode } from '../../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../../src/agent/workload/messages.js';
import { foreignBundle, makeJwtKey, TestCa } from '../../support/fake-workload-cache.js';
import { opensslVerify } from '../../support/openssl.js';
import { APP_A, APP_B, eventually, FOREIGN_TD, SELECTOR_A, SELECTOR_B, startWorkloadHarness, TD, within, type WorkloadHarness } from './workload-harness.js';

const PERMISSION_DENIED = 7;
const UNAVAILABLE = 14;
const APP_C = 'spiffe://example.org/ns/default/sa/worker';

/** Lets every setImmediate queued so far (the streams' coalesced cache notifications) run. */
async function drainImmediates(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

function leafOf(svid: { x509_svid: Buffer }): X509Certificate {
  return new X509Certificate(splitConcatenatedDer(svid.x509_svid)[0]!);
}

async function expectStatus(promise: Promise<unknown>, code: number, what: string): Promise<Error> {
  const err = await within(promise.then(() => undefined, (e: unknown) => e), what);
  assert.ok(err instanceof Error, `${what}: expected a failure, got success`);
  assert.equal(grpcCode(err), code, `${what}: ${(err as Error).message}`);
  return err as Error;
}

let ca: TestCa;
let partner: TestCa;
before(() => {
  ca = new TestCa(TD);
  partner = new TestCa(FOREIGN_TD);
});
after(() => {
  ca.dispose();
  partner.dispose();
});

describe('FetchX509SVID first message (attestation stubbed: caller has unix:uid:1001)', () => {
  let h: WorkloadHarness;
  let first: X509SvidResponse;
  before(async () => {
    h = await startWorkloadHarness(ca, (cache) => {
      cache.addEntry(SELECTOR_A, APP_A, { hint: 'web', federatesWith: [FOREIGN_TD, TD] });
      cache.addEntry(SELECTOR_A, APP_C, { hint: 'web' });
      cache.addEntry(SELECTOR_A, APP_B, { hint: 'db' });
      cache.setFederatedBundle(foreignBundle(partner, 7));
      // A federated bundle that names the own trust domain must never show up among federated_bundles.
      cache.setFederatedBundle({ ...ca.bundle(1), trustDomain: TD });
    });
    first = await h.client.fetchX509Svid();
  });
  after(async () => h.close());

  test('svids[0] is the oldest entry (the default identity); a later SVID repeating a hint is dropped', () => {
    assert.deepEqual(first.svids.map((s) => s.spiffe_id), [APP_A, APP_B]);
    assert.deepEqual(first.svids.map((s) => s.hint), ['web', 'db']);
  });

  test('x509_svid is the concatenated DER chain, leaf (with the SPIFFE ID) then intermediate, and verifies with openssl -x509_strict', () => {
    const svid = first.svids[0]!;
    const chain = splitConcatenatedDer(svid.x509_svid);
    assert.equal(chain.length, 2);
    assert.deepEqual(chain[1], ca.intermediateDer);
    const leaf = new X509Certificate(chain[0]!);
    assert.match(leaf.subjectAltName ?? '', /URI:spiffe:\/\/example\.org\/ns\/default\/sa\/frontend/);
    const bundle = splitConcatenatedDer(svid.bundle);
    const verdict = opensslVerify({ roots: bundle, intermediates: [chain[1]!], leaf: chain[0]!, purpose: 'sslclient' });
    assert.ok(verdict.ok, verdict.output);
  });

  test('x509_svid_key is PKCS#8 DER of the key the leaf certifies', () => {
    for (const svid of first.svids) {
      const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
      assert.ok(leafOf(svid).checkPrivateKey(key), svid.spiffe_id);
    }
  });

  test('bundle is the own root as DER, identical for every SVID', () => {
    for (const svid of first.svids) assert.deepEqual(splitConcatenatedDer(svid.bundle), [ca.rootDer]);
  });

  test('federated_bundles is keyed spiffe://<foreign td> with its DER roots; the own domain is never listed', () => {
    assert.deepEqual(Object.keys(first.federated_bundles ?? {}), [`spiffe://${FOREIGN_TD}`]);
    assert.deepEqual(splitConcatenatedDer(first.federated_bundles![`spiffe://${FOREIGN_TD}`]!), [partner.rootDer]);
  });
});

// The agent's attestor answers synchronously; the handler also accepts one that answers with a promise.
for (const asyncAttest of [false, true]) {
  describe(`FetchX509SVID refusals (attestation stubbed, answering ${asyncAttest ? 'with a promise' : 'synchronously'})`, () => {
    let h: WorkloadHarness;
    before(async () => {
      h = await startWorkloadHarness(ca, (cache) => cache.addEntry(SELECTOR_A, APP_A), { asyncAttest });
    });
    after(async () => h.close());

    test('the registered caller gets its SVID', async () => {
      const res = await h.client.fetchX509Svid();
      assert.deepEqual(
        res.svids?.map((s) => s.spiffe_id),
        [APP_A],
      );
    });

    test('a caller no entry matches gets PERMISSION_DENIED, never an empty message or another identity', async () => {
      h.caller = [{ type: 'unix', value: 'uid:4242' }];
      await expectStatus(h.client.fetchX509Svid(), PERMISSION_DENIED, 'unregistered caller');
      h.caller = [{ type: 'unix', value: 'uid:1001' }];
    });

    test('before its first sync since start, a caller no entry held matches is UNAVAILABLE (retry), not PERMISSION_DENIED', async () => {
      // Served from the data dir (the server unreachable, say): its entry may have been made while the agent was down.
      h.cache.isSynced = false;
      h.caller = [{ type: 'unix', value: 'uid:4242' }];
      try {
        const err = await expectStatus(h.client.fetchX509Svid(), UNAVAILABLE, 'unregistered caller, not synced');
        // True after a start on restored state and after a re-attestation under a new agent ID alike.
        assert.equal(err.message, 'the agent has not synced with meshid-server since it started or attested again: no entry it holds matches the caller; retry');
        await expectStatus(h.client.fetchX509Bundles(), UNAVAILABLE, 'FetchX509Bundles, not synced');
        await expectStatus(h.client.fetchJwtSvid(['db']), UNAVAILABLE, 'FetchJWTSVID, not synced');
        h.caller = [{ type: 'unix', value: 'uid:1001' }];
        const res = await h.client.fetchX509Svid();
        assert.deepEqual(res.svids?.map((s) => s.spiffe_id), [APP_A], 'a caller the restored state names is served meanwhile');
      } finally {
        h.caller = [{ type: 'unix', value: 'uid:1001' }];
        h.cache.isSynced = true;
      }
    });

    test('failed attestation is UNAVAILABLE, whether the attestor throws a MeshidError or anything else', async () => {
      h.attestError = unavailable('workload attestation failed: process exited');
      await expectStatus(h.client.fetchX509Svid(), UNAVAILABLE, 'MeshidError');
      h.attestError = new Error('boom');
      await expectStatus(h.client.fetchX509Svid(), UNAVAILABLE, 'plain Error');
      h.attestError = undefined;
    });

    test('an agent without state yet is UNAVAILABLE, before attestation', async () => {
      h.cache.isReady = false;
      const attested = h.attestCalls();
      await expectStatus(h.client.fetchX509Svid(), UNAVAILABLE, 'not ready');
      assert.equal(h.attestCalls(), attested);
      h.cache.isReady = true;
    });
  });
}

describe('FetchX509SVID updates (attestation stubbed: caller has unix:uid:1001)', () => {
  let h: WorkloadHarness;
  before(async () => {
    h = await startWorkloadHarness(ca, (cache) => cache.addEntry(SELECTOR_A, APP_A));
  });
  after(async () => h.close());

  test('a rotation sends the new SVID; spurious notifications and bundle changes invisible to X.509 send nothing', async () => {
    const watch = h.client.watchX509Svids();
    try {
      const m1 = (await within(watch.next(), 'first message')).value as X509SvidResponse;
      const serial1 = leafOf(m1.svids[0]!).serialNumber;
      // Nothing the caller sees changes: a notification without change, and a new own bundle whose X.509 roots are
      // the same (only JWT keys changed). A duplicate would be written here, before the rotation below.
      h.cache.notify();
      await drainImmediates();
      h.cache.bumpOwnBundle([makeJwtKey('own-key-2')]);
      await drainImmediates();
      h.cache.rotate(APP_A);
      const m2 = (await within(watch.next(), 'message after rotation')).value as X509SvidResponse;
      // Messages arrive in order: had a duplicate been sent, m2 would still carry the first serial.
      const serial2 = leafOf(m2.svids[0]!).serialNumber;
      assert.notEqual(serial2, serial1);
      assert.equal(serial2.toLowerCase(), h.cache.svidOf(APP_A).version.replace(/^0x/, '').toLowerCase());
      assert.notDeepEqual(m2.svids[0]!.x509_svid_key, m1.svids[0]!.x509_svid_key);
    } finally {
      watch.cancel();
    }
  });

  test('a new entitlement adds an SVID behind the default; a new federated bundle is pushed', async () => {
    const watch = h.client.watchX509Svids();
    try {
      await within(watch.next(), 'first message');
      h.cache.addEntry(SELECTOR_A, APP_B);
      const m2 = (await within(watch.next(), 'after new entry')).value as X509SvidResponse;
      assert.deepEqual(m2.svids.map((s) => s.spiffe_id), [APP_A, APP_B]);
      h.cache.setFederatedBundle(foreignBundle(partner, 1));
      await drainImmediates();
      h.cache.setFederatesWith(APP_B, [FOREIGN_TD]);
      const m3 = (await within(watch.next(), 'after federation')).value as X509SvidResponse;
      assert.deepEqual(Object.keys(m3.federated_bundles ?? {}), [`spiffe://${FOREIGN_TD}`]);
      h.cache.removeEntry(APP_B);
      const m4 = (await within(watch.next(), 'after removal')).value as X509SvidResponse;
      assert.deepEqual(m4.svids.map((s) => s.spiffe_id), [APP_A]);
      assert.equal(m4.federated_bundles, undefined, 'the federated bundle went with the entry that federated');
    } finally {
      watch.cancel();
    }
  });

  test('while the default identity has no SVID, no message makes a sibling the default', async () => {
    h.cache.addEntry(SELECTOR_A, APP_B);
    const watch = h.client.watchX509Svids();
    try {
      const m1 = (await within(watch.next(), 'first message')).value as X509SvidResponse;
      assert.deepEqual(m1.svids.map((s) => s.spiffe_id), [APP_A, APP_B]);
      h.cache.withdraw(APP_A);
      await drainImmediates();
      h.cache.issue(APP_A);
      // Had the stream written [APP_B] while APP_A had no SVID, that message would come first.
      const m2 = (await within(watch.next(), 'after the default is re-issued')).value as X509SvidResponse;
      assert.deepEqual(m2.svids.map((s) => s.spiffe_id), [APP_A, APP_B]);
      assert.notDeepEqual(m2.svids[0]!.x509_svid_key, m1.svids[0]!.x509_svid_key);
    } finally {
      watch.cancel();
      h.cache.removeEntry(APP_B);
    }
  });

  test('removing the last entitlement ends the stream with PERMISSION_DENIED', async () => {
    const watch = h.client.watchX509Svids();
    await within(watch.next(), 'first message');
    h.cache.removeEntry(APP_A);
    await expectStatus(watch.next(), PERMISSION_DENIED, 'after the last entry went');
    await eventually(() => h.cache.subscriberCount() === 0, 'the subscription to go');
    h.cache.addEntry(SELECTOR_A, APP_A);
  });

  test('a client that cancels leaves no subscription or open stream behind', async () => {
    const watches = [h.client.watchX509Svids(), h.client.watchX509Bundles(), h.client.watchJwtBundles()];
    for (const w of watches) await within<unknown>(w.next(), 'first message');
    assert.equal(h.cache.subscriberCount(), 3);
    assert.equal(h.service.openStreams(), 3);
    for (const w of watches) w.cancel();
    await eventually(() => h.cache.subscriberCount() === 0 && h.service.openStreams() === 0, 'subscriptions to be released');
  });

  test('closing the service ends open streams with UNAVAILABLE and unsubscribes them', async () => {
    const watch = h.client.watchX509Svids();
    await within(watch.next(), 'first message');
    h.service.close();
    await expectStatus(watch.next(), UNAVAILABLE, 'after close');
    assert.equal(h.cache.subscriberCount(), 0);
  });
});

describe('FetchX509SVID while SVIDs are being issued (attestation stubbed, fake clock)', () => {
  let h: WorkloadHarness;
  const clock = new FakeClock();
  before(async () => {
    h = await startWorkloadHarness(ca, (cache) => {
      cache.addEntry(SELECTOR_A, APP_A, { issued: false });
      cache.addEntry(SELECTOR_A, APP_B);
    }, { clock, caller: [SELECTOR_A] });
  });
  after(async () => h.close());

  test('the first message waits until every entitled SVID is issued, so svids[0] is the real default', async () => {
    const watch = h.client.watchX509Svids();
    try {
      await eventually(() => h.cache.subscriberCount() === 1, 'the stream to subscribe');
      await drainImmediates();
      h.cache.issue(APP_A);
      const m1 = (await within(watch.next(), 'first message')).value as X509SvidResponse;
      // Had the stream sent what it had before APP_A was issued, the first message would hold APP_B alone.
      assert.deepEqual(m1.svids.map((s) => s.spiffe_id), [APP_A, APP_B]);
    } finally {
      watch.cancel();
    }
  });

  test('an entitled caller whose SVIDs never arrive gets UNAVAILABLE after the bound (30 s of the injected clock)', async () => {
    h.cache.addEntry(SELECTOR_B, APP_C, { issued: false });
    h.caller = [{ type: 'unix', value: 'uid:1002' }];
    await eventually(() => h.cache.subscriberCount() === 0, 'no leftover subscription');
    const watch = h.client.watchX509Svids();
    await eventually(() => h.cache.subscriberCount() === 1, 'the stream to subscribe');
    clock.advance(29_999);
    await drainImmediates();
    assert.equal(h.service.openStreams(), 1, 'still waiting before the bound');
    clock.advance(1);
    const err = await expectStatus(watch.next(), UNAVAILABLE, 'after the bound');
    assert.ok(err instanceof MeshidError && /still being signed, or meshid-server is unreachable/.test(err.message), err.message);
    assert.equal(h.cache.subscriberCount(), 0);
  });
});
