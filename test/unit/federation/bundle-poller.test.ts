/**
 * The poller's schedule and storage rules, with the endpoint stubbed (a fetch function; the real HTTPS fetch is in
 * test/integration/federation-endpoint.test.ts) over a real SQLite datastore and a fake clock.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';

import { bundleToSpiffeJson, federatedBundleFromSpiffeJson, type FederatedBundleDocument, type TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { formatDuration } from '../../../src/common/duration.js';
import { silentLogger } from '../../../src/common/log.js';
import type { FakeClock } from '../../../src/common/clock.js';
import { DEFAULT_REFRESH_MS, FederatedBundlePoller, FIRST_RETRY_MS, MIN_REFRESH_MS } from '../../../src/server/federation/bundle-poller.js';
import type { Datastore } from '../../../src/server/datastore/datastore.js';
import { compileRelationships, endpointTrustDomain, type FederationRelationship } from '../../../src/server/federation/relationship.js';
import { storedFederatedBundle } from '../../../src/server/federation/federated-bundle.js';
import { createRootCertificate } from '../../../src/common/x509/ca-certificates.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { withDatastore } from '../datastore/fixture.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const [REL] = compileRelationships(
  { 'partner.org': { bundle_endpoint_url: 'https://partner.example:8443', bundle_endpoint_profile: 'https_web' } },
  'example.org',
);

/** An https_spiffe relationship: its endpoint is authenticated with the stored bundle of partner.org. */
const [SPIFFE_REL] = compileRelationships(
  { 'partner.org': { bundle_endpoint_url: 'https://partner.example:8443', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.org/s' } },
  'example.org',
);

/** Stores `rel` as the admin API does before it hands a relationship to the poller (source 'api'). */
async function storeRelationship(ds: Datastore, rel: FederationRelationship): Promise<void> {
  await ds.createFederationRelationship({ ...rel, createdAt: 0, updatedAt: 0 });
}

/** A stubbed endpoint: answers (or throws) what `next` says, and counts the calls. */
function stubEndpoint(): { next: () => TrustBundle; calls: number; fetch: () => Promise<FederatedBundleDocument> } {
  const stub = {
    next: (): TrustBundle => {
      throw new Error('no answer set');
    },
    calls: 0,
    fetch: async (): Promise<FederatedBundleDocument> => {
      stub.calls++;
      return { bundle: stub.next(), ignored: [], unreadableTypes: 0 };
    },
  };
  return stub;
}

/** partner.org's CA, disposed of when the test ends. */
function partnerCa(t: TestContext): TestCa {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  return ca;
}

/** A poller of `rel` alone whose polls a stubbed endpoint answers; stopped when the test ends. */
function pollerOnStub(
  t: TestContext, rel: FederationRelationship, ds: Datastore, clock: FakeClock, log = silentLogger(),
): { endpoint: ReturnType<typeof stubEndpoint>; poller: FederatedBundlePoller; pollAfter: (ms: number) => Promise<void> } {
  const endpoint = stubEndpoint();
  const poller = new FederatedBundlePoller([rel], ds, clock, log, endpoint.fetch);
  t.after(() => poller.stop());
  /** Moves the clock; a poll of `rel` must start then, and is waited for. */
  const pollAfter = async (ms: number): Promise<void> => {
    clock.advance(ms);
    const poll = poller.pending(rel.trustDomain);
    assert.ok(poll, `a poll started after ${ms} ms`);
    await poll;
  };
  return { endpoint, poller, pollAfter };
}

test('the poller stores changed bundles only, polls at the clamped hint, and backs off after failures keeping the stored bundle (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const { endpoint, poller, pollAfter } = pollerOnStub(t, REL!, ds, clock);

    endpoint.next = () => ({ ...ca.bundle(7), refreshHintSeconds: 1 });
    poller.start();
    await pollAfter(0);
    const first = (await ds.getBundle('partner.org'))!;
    assert.deepEqual(first.x509Authorities, [ca.rootDer]);
    assert.equal(first.sequence, 1, "meshid's own count of changes, not the partner's sequence");

    // A hint of 1 s is obeyed as 30 s: nothing before, one poll then; the same content is not stored again.
    clock.advance(MIN_REFRESH_MS - 1);
    assert.equal(poller.pending('partner.org'), undefined);
    await pollAfter(1);
    assert.equal(endpoint.calls, 2);
    assert.equal((await ds.getBundle('partner.org'))!.sequence, 1);

    // Failures change nothing stored and retry after 30 s, then again after 30 s: the backoff stops at the partner's
    // polling interval (its hint, bounded).
    endpoint.next = () => {
      throw new Error('connection refused');
    };
    await pollAfter(MIN_REFRESH_MS);
    clock.advance(FIRST_RETRY_MS - 1);
    assert.equal(poller.pending('partner.org'), undefined);
    await pollAfter(1);
    clock.advance(MIN_REFRESH_MS - 1);
    assert.equal(poller.pending('partner.org'), undefined);
    await pollAfter(1);
    assert.equal(endpoint.calls, 5);
    assert.deepEqual((await ds.getBundle('partner.org'))!.x509Authorities, [ca.rootDer]);

    // A bundle with no keys is the partner revoking every key (Bundle §4.1.3): stored, empty; nothing is trusted.
    endpoint.next = () => ({ ...ca.bundle(8), x509Authorities: [], jwtAuthorities: [] });
    await poller.refresh('partner.org');
    const revoked = (await ds.getBundle('partner.org'))!;
    assert.deepEqual([revoked.x509Authorities, revoked.jwtAuthorities, revoked.sequence], [[], [], 2]);
    assert.equal(poller.status('partner.org')!.lastError, undefined, 'https_web still reaches the endpoint');

    // A changed bundle is stored under the next sequence, whatever the partner's (here the largest JSON can carry).
    const other = new TestCa('partner.org');
    t.after(() => other.dispose());
    endpoint.next = () => ({ ...other.bundle(1), sequence: Number.MAX_SAFE_INTEGER });
    await poller.refresh('partner.org');
    const changed = (await ds.getBundle('partner.org'))!;
    assert.deepEqual(changed.x509Authorities, [other.rootDer]);
    assert.equal(changed.sequence, 3);
    endpoint.next = () => ({ ...ca.bundle(1), sequence: Number.MAX_SAFE_INTEGER });
    await poller.refresh('partner.org');
    assert.equal((await ds.getBundle('partner.org'))!.sequence, 4, 'and the next change after that still stores');
  });
});

test('federates_with in the config is checked: profile, https URL, an endpoint SPIFFE ID with a path', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ 'example.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_web' } }, /own trust domain/],
    [{ 'p.org': { bundle_endpoint_url: 'http://x', bundle_endpoint_profile: 'https_web' } }, /must be an https:\/\/ URL/],
    [{ 'p.org': { bundle_endpoint_url: 'https://u:pw@x', bundle_endpoint_profile: 'https_web' } }, /credentials/],
    [{ 'p.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'spiffe' } }, /must be one of https_spiffe, https_web/],
    [{ 'p.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_spiffe' } }, /needs endpoint_spiffe_id/],
    [{ 'p.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://q.org' } }, /endpoint_spiffe_id "spiffe:\/\/q\.org" must have a path/],
    [{ 'p.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'q.org/s' } }, /endpoint_spiffe_id: "q\.org\/s" is not a SPIFFE ID/],
    [{ 'p.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_web', endpoint_spiffe_id: 'spiffe://p.org/s' } }, /is for https_spiffe/],
    [{ 'p.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_web', refresh: 5 } }, /unknown key "refresh"/],
    [{ 'P.org': { bundle_endpoint_url: 'https://x', bundle_endpoint_profile: 'https_web' } }, /lowercase|invalid/i],
    [['p.org'], /must be an object keyed by trust domain/],
  ];
  for (const [raw, message] of bad) assert.throws(() => compileRelationships(raw, 'example.org'), message, JSON.stringify(raw));
  const [ok] = compileRelationships(
    { 'p.org': { bundle_endpoint_url: 'https://p.example:8443', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://p.org/spire/server' } },
    'example.org',
  );
  assert.deepEqual(ok, { trustDomain: 'p.org', bundleEndpointUrl: 'https://p.example:8443/', profile: 'https_spiffe', endpointSpiffeId: 'spiffe://p.org/spire/server' });
  assert.equal(endpointTrustDomain(ok!), 'p.org');
  // Bundle §5.2.2.2: an endpoint another trust domain hosts is authenticated by that domain's bundle.
  const [hosted] = compileRelationships(
    { 'p.org': { bundle_endpoint_url: 'https://host.example', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://host.example/bundles' } },
    'example.org',
  );
  assert.equal(endpointTrustDomain(hosted!), 'host.example');
});

test('an https_spiffe partner serving JWT keys alone is applied, and the relationship reports it can no longer fetch (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const { endpoint, poller } = pollerOnStub(t, SPIFFE_REL!, ds, clock);
    endpoint.next = () => ca.bundle(1);
    await poller.refresh('partner.org');
    endpoint.next = () => ({ ...ca.bundle(2), x509Authorities: [], jwtAuthorities: [{ kid: 'k1', publicKey: jobFreeKeyPair('ec', { namedCurve: 'P-256' }).publicKey }] });
    await poller.refresh('partner.org');
    const stored = (await ds.getBundle('partner.org'))!;
    assert.deepEqual([stored.x509Authorities, stored.jwtAuthorities.map((k) => k.kid)], [[], ['k1']], 'the revoked root is not kept');
    assert.match(
      poller.status('partner.org')!.lastError!.message,
      /with JWT keys but no X\.509 roots, now stored: partner\.org is trusted for JWT-SVIDs only, .*"meshid-server bundle set --trust-domain partner\.org"/,
    );
  });
});

test('relationships added, replaced and removed while running: a removed or replaced one stores nothing more and polls no more (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const endpoint = stubEndpoint();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let urls: string[] = [];
    const poller = new FederatedBundlePoller([], ds, clock, silentLogger(), async (r) => {
      urls.push(r.bundleEndpointUrl);
      await gate;
      return endpoint.fetch();
    });
    t.after(() => poller.stop());
    endpoint.next = () => ca.bundle(1);
    poller.start();

    // Added after start: polled at once.
    await storeRelationship(ds, REL!);
    poller.set(REL!, 'api');
    assert.equal(poller.status('partner.org')?.source, 'api');
    clock.advance(0);
    const first = poller.pending('partner.org');
    assert.ok(first, 'polled as soon as it was added');
    // Replaced while that poll waits on the endpoint: the old poll's answer is dropped, the new settings polled.
    const [moved] = compileRelationships(
      { 'partner.org': { bundle_endpoint_url: 'https://moved.example/', bundle_endpoint_profile: 'https_web' } },
      'example.org',
    );
    poller.set(moved!, 'api');
    release();
    await first;
    assert.equal(await ds.getBundle('partner.org'), undefined, 'the replaced poll stored nothing');
    clock.advance(0);
    await poller.pending('partner.org');
    assert.deepEqual(urls, ['https://partner.example:8443/', 'https://moved.example/']);
    assert.deepEqual((await ds.getBundle('partner.org'))?.x509Authorities, [ca.rootDer]);

    // Removed: no status, no more polls, whatever the clock does.
    poller.remove('partner.org');
    assert.equal(poller.status('partner.org'), undefined);
    urls = [];
    clock.advance(24 * 3_600_000);
    assert.equal(poller.pending('partner.org'), undefined);
    assert.deepEqual(urls, []);
  });
});

test('a refresh whose poll was overtaken by an update polls the new settings; a poll storing when removed re-arms nothing (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const urls: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const poller = new FederatedBundlePoller([], ds, clock, silentLogger(), async (r) => {
      urls.push(r.bundleEndpointUrl);
      if (r.bundleEndpointUrl === 'https://partner.example:8443/') {
        await gate;
        throw new Error('connection refused');
      }
      return { bundle: ca.bundle(1), ignored: [], unreadableTypes: 0 };
    });
    t.after(() => poller.stop());
    await storeRelationship(ds, REL!);
    poller.set(REL!, 'api');
    const refreshed = poller.refresh('partner.org');
    const [moved] = compileRelationships(
      { 'partner.org': { bundle_endpoint_url: 'https://moved.example/', bundle_endpoint_profile: 'https_web' } },
      'example.org',
    );
    poller.set(moved!, 'api');
    release();
    await refreshed;
    const status = poller.status('partner.org')!;
    assert.equal(status.lastError, undefined, 'the outcome is the current settings\' poll, not the overtaken one');
    assert.ok(status.lastSuccessAt !== undefined);
    assert.deepEqual(urls, ['https://partner.example:8443/', 'https://moved.example/']);
  });

  // A datastore whose write yields (as PostgreSQL's will): the relationship goes while the poll stores.
  await withDatastore(async ({ ds, clock }) => {
    let storing!: () => void;
    const stored = new Promise<void>((resolve) => (storing = resolve));
    let unblock!: () => void;
    const blocked = new Promise<void>((resolve) => (unblock = resolve));
    const slow = Object.create(ds) as typeof ds;
    slow.setBundle = async (b, options) => {
      storing();
      await blocked;
      return ds.setBundle(b, options);
    };
    let fetches = 0;
    const poller = new FederatedBundlePoller([], slow, clock, silentLogger(), async () => {
      fetches++;
      return { bundle: ca.bundle(1), ignored: [], unreadableTypes: 0 };
    });
    t.after(() => poller.stop());
    poller.start();
    await storeRelationship(ds, REL!);
    poller.set(REL!, 'api');
    clock.advance(0);
    await stored;
    poller.remove('partner.org');
    unblock();
    await new Promise((r) => setImmediate(r));
    clock.advance(DEFAULT_REFRESH_MS * 2);
    await new Promise((r) => setImmediate(r));
    assert.equal(fetches, 1, 'nothing polls a removed relationship');
  });
});

test('a poll does not write back a bundle deleted or replaced while it was fetching (stubbed endpoint)', async (t) => {
  const ca = new TestCa('partner.org');
  const other = new TestCa('partner.org');
  t.after(() => [ca, other].forEach((c) => c.dispose()));
  await withDatastore(async ({ ds, clock }) => {
    await ds.setBundle(storedFederatedBundle('partner.org', ca.bundle(1), undefined, clock.now()));
    let during: () => Promise<void> = async () => undefined;
    const fetch = async (): Promise<FederatedBundleDocument> => {
      await during();
      return { bundle: other.bundle(2), ignored: [], unreadableTypes: 0 };
    };
    const poller = new FederatedBundlePoller([REL!], ds, clock, silentLogger(), fetch);
    t.after(() => poller.stop());

    // The operator deletes the bundle while the endpoint is answering: the poll must not bring it back.
    during = async () => void (await ds.deleteBundle('partner.org'));
    await poller.refresh('partner.org');
    assert.equal(await ds.getBundle('partner.org'), undefined);
    assert.match(poller.status('partner.org')!.lastError!.message, /bundle partner\.org changed meanwhile \(deleted, expected 1\)/);

    // Nor overwrite one the operator set meanwhile.
    await ds.setBundle(storedFederatedBundle('partner.org', ca.bundle(1), undefined, clock.now()));
    during = async () => void (await ds.setBundle(storedFederatedBundle('partner.org', ca.bundle(1), await ds.getBundle('partner.org'), clock.now())));
    await poller.refresh('partner.org');
    assert.deepEqual((await ds.getBundle('partner.org'))!.x509Authorities, [ca.rootDer], "the operator's bundle stays");

    // With nothing in the way, the next poll stores what the endpoint serves.
    during = async () => undefined;
    await poller.refresh('partner.org');
    assert.deepEqual((await ds.getBundle('partner.org'))!.x509Authorities, [other.rootDer]);
  });
});

test('a failed poll is retried after 30 s, doubling, never later than the partner\'s polling interval (Federation §6.2); a refresh hint of 0 is no hint (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  /** The delays between the polls after a success at `hintSeconds`, while the endpoint keeps failing. */
  const retryDelays = async (hintSeconds: number | undefined, failures: number): Promise<number[]> => {
    const delays: number[] = [];
    await withDatastore(async ({ ds, clock }) => {
      const endpoint = stubEndpoint();
      const poller = new FederatedBundlePoller([REL!], ds, clock, silentLogger(), endpoint.fetch);
      try {
        endpoint.next = () => ({ ...ca.bundle(1), ...(hintSeconds === undefined ? {} : { refreshHintSeconds: hintSeconds }) });
        await poller.refresh('partner.org');
        endpoint.next = () => {
          throw new Error('connection refused');
        };
        for (let i = 0; i <= failures; i++) {
          const { nextPollAt, lastAttemptAt } = poller.status('partner.org')!;
          delays.push(nextPollAt! - lastAttemptAt!);
          clock.advance(nextPollAt! - clock.now());
          await poller.pending('partner.org');
        }
      } finally {
        poller.stop();
      }
    });
    return delays;
  };
  // The first number is the interval itself (after the success), then the retries.
  assert.deepEqual(await retryDelays(60, 4), [60_000, 30_000, 60_000, 60_000, 60_000], 'a partner polled every minute is retried every minute at most');
  assert.deepEqual(await retryDelays(undefined, 6), [DEFAULT_REFRESH_MS, 30_000, 60_000, 120_000, 240_000, DEFAULT_REFRESH_MS, DEFAULT_REFRESH_MS]);
  assert.deepEqual(await retryDelays(0, 1), [DEFAULT_REFRESH_MS, 30_000], 'a hint of 0 s is taken as none (SPIRE too), not as "as often as allowed"');
  const hourly = await retryDelays(3600, 9);
  assert.deepEqual(hourly.slice(0, 9), [3_600_000, 30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000], 'an hourly partner is not polled every 5 min while it is down');
});

test('a bundle set for the trust domain an https_spiffe relationship is anchored on polls a failing one at once, not at its next retry (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const { endpoint, poller } = pollerOnStub(t, SPIFFE_REL!, ds, clock);
    endpoint.next = () => {
      throw new Error('does not chain to the X.509 root stored for partner.org');
    };
    poller.start();
    clock.advance(0);
    await poller.pending('partner.org');
    assert.ok(poller.status('partner.org')!.lastError);
    const retryAt = poller.status('partner.org')!.nextPollAt!;
    assert.ok(retryAt > clock.now());

    // Another trust domain's bundle changes nothing here.
    poller.anchorsReplaced('other.org');
    assert.equal(poller.pending('partner.org'), undefined);
    assert.equal(poller.status('partner.org')!.nextPollAt, retryAt);

    endpoint.next = () => ca.bundle(1);
    poller.anchorsReplaced('partner.org');
    clock.advance(0);
    const poll = poller.pending('partner.org');
    assert.ok(poll, 'polled without waiting for the retry');
    await poll;
    assert.equal(poller.status('partner.org')!.lastError, undefined);
    assert.equal(endpoint.calls, 2);

    // Not failing: the schedule stays.
    const next = poller.status('partner.org')!.nextPollAt;
    poller.anchorsReplaced('partner.org');
    assert.equal(poller.status('partner.org')!.nextPollAt, next);
  });
});

test("an endpoint serving another trust domain's CA (its URL another partner's) is applied with a warning naming the root and the relationship (stubbed endpoint)", async (t) => {
  const ca = partnerCa(t);
  // A meshid or SPIRE root carries its trust domain's SPIFFE ID; TestCa's roots carry none.
  const other = await createRootCertificate({ trustDomain: 'other.org', ...generateKeyPair('ec-p256'), notBefore: Date.now(), notAfter: Date.now() + 86_400_000 });
  await withDatastore(async ({ ds, clock }) => {
    const { log, records } = capturingLogger('server');
    const { endpoint, poller } = pollerOnStub(t, REL!, ds, clock, log);
    endpoint.next = () => ({ ...ca.bundle(1), x509Authorities: [ca.rootDer, other] });
    poller.start();
    clock.advance(0);
    await poller.pending('partner.org');
    assert.deepEqual((await ds.getBundle('partner.org'))!.x509Authorities, [ca.rootDer, other], 'applied: X509-SVID §3.2 says SHOULD');
    const warned = records().filter((r) => r.level === LEVEL.warn);
    assert.deepEqual(
      warned.map((r) => [r.msg, r['reason']]),
      [[
        "the bundle endpoint serves a CA of another trust domain: if its URL is other.org's endpoint, correct the relationship",
        'the bundle of partner.org holds a CA of another trust domain (root 2 carries spiffe://other.org), trusted for partner.org all the same',
      ]],
    );
    // The same bundle again is no change, and no second warning.
    clock.advance(DEFAULT_REFRESH_MS);
    await poller.pending('partner.org');
    assert.equal(endpoint.calls, 2);
    assert.equal(records().filter((r) => r.level === LEVEL.warn).length, 1);
  });
});

test('a re-seed while a failing https_spiffe poll is under way with the old roots is answered by a poll right after it (stubbed endpoint)', async (t) => {
  const old = new TestCa('partner.org');
  const rotated = new TestCa('partner.org');
  t.after(() => [old, rotated].forEach((c) => c.dispose()));
  await withDatastore(async ({ ds, clock }) => {
    await ds.setBundle(storedFederatedBundle('partner.org', old.bundle(1), undefined, clock.now()));
    let release: () => void = () => undefined;
    let gate = Promise.resolve();
    const seen: boolean[] = [];
    // The partner replaced its roots unseen: only the rotated root authenticates its endpoint.
    const fetch = async (_rel: FederationRelationship, anchors: readonly Buffer[] | undefined): Promise<FederatedBundleDocument> => {
      const trusted = anchors?.some((a) => a.equals(rotated.rootDer)) ?? false;
      seen.push(trusted);
      await gate;
      if (!trusted) throw new Error('does not chain to the X.509 root stored for partner.org');
      return { bundle: rotated.bundle(2), ignored: [], unreadableTypes: 0 };
    };
    const poller = new FederatedBundlePoller([SPIFFE_REL!], ds, clock, silentLogger(), fetch);
    t.after(() => poller.stop());
    poller.start();
    clock.advance(0);
    await poller.pending('partner.org');
    assert.ok(poller.status('partner.org')!.lastError);

    // The retry starts, reads the old roots, and is held; meanwhile the operator seeds the rotated root.
    gate = new Promise((resolve) => (release = resolve));
    clock.advance(FIRST_RETRY_MS);
    const retry = poller.pending('partner.org');
    assert.ok(retry);
    await ds.setBundle(storedFederatedBundle('partner.org', rotated.bundle(1), await ds.getBundle('partner.org'), clock.now()));
    poller.anchorsReplaced('partner.org');
    release();
    await retry;
    assert.deepEqual(seen, [false, false]);
    assert.equal(poller.status('partner.org')!.nextPollAt, clock.now(), 'the re-seed is tried at once, not at the next retry');
    clock.advance(0);
    await poller.pending('partner.org');
    assert.deepEqual(seen, [false, false, true]);
    assert.equal(poller.status('partner.org')!.lastError, undefined);
  });
});

test("a failed poll is a warning with the fields README's logging paragraph names: trustDomain, url, failures, retryInMs (in ms, when the next poll comes) and reason (stubbed endpoint)", async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  await withDatastore(async ({ ds, clock }) => {
    const { log, records } = capturingLogger('meshid-server');
    const { endpoint, poller } = pollerOnStub(t, REL!, ds, clock, log);
    endpoint.next = () => {
      throw new Error('connect ECONNREFUSED 192.0.2.7:8443');
    };
    await poller.refresh('partner.org');
    const warned = records().filter((r) => r.msg.startsWith('cannot refresh a federated bundle from its endpoint; the stored one stays as it is'));
    assert.equal(warned.length, 1);
    assert.match(warned[0]!.msg, /\(retries are logged at debug level until it succeeds\)$/, 'as every retried failure says it');
    assert.equal(warned[0]!.level, LEVEL.warn);
    // Every field but pino's own (level, time, pid, hostname, name, msg).
    const fields = Object.fromEntries(Object.entries(warned[0]!).filter(([k]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg'].includes(k)));
    assert.deepEqual(fields, {
      trustDomain: 'partner.org',
      url: REL!.bundleEndpointUrl,
      failures: 1,
      retryInMs: FIRST_RETRY_MS,
      reason: 'connect ECONNREFUSED 192.0.2.7:8443',
    });
    const { nextPollAt, lastAttemptAt } = poller.status('partner.org')!;
    assert.equal(nextPollAt! - lastAttemptAt!, fields['retryInMs'], 'retryInMs is the delay until the next poll');
  });
});

test('a partner endpoint down is a warning when it begins and when its reason changes, its retries debug, its end one info line with failingFor (stubbed endpoint)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const { log, records } = capturingLogger('meshid-server');
    const { endpoint, poller, pollAfter } = pollerOnStub(t, REL!, ds, clock, log);
    let reason = 'connect ECONNREFUSED 192.0.2.7:8443';
    endpoint.next = () => {
      throw new Error(reason);
    };
    poller.start();
    const since = clock.now();
    await pollAfter(0);
    await pollAfter(FIRST_RETRY_MS);
    await pollAfter(2 * FIRST_RETRY_MS);
    reason = 'connect ETIMEDOUT 192.0.2.7:8443';
    await pollAfter(4 * FIRST_RETRY_MS);
    await pollAfter(poller.status('partner.org')!.nextPollAt! - clock.now());
    const failed = records().filter((r) => r.msg.startsWith('cannot refresh a federated bundle from its endpoint; the stored one stays as it is'));
    assert.deepEqual(
      failed.map((r) => [r['failures'], r.level]),
      [[1, LEVEL.warn], [2, LEVEL.debug], [3, LEVEL.debug], [4, LEVEL.warn], [5, LEVEL.debug]],
    );

    endpoint.next = () => ca.bundle(1);
    await pollAfter(poller.status('partner.org')!.nextPollAt! - clock.now());
    const back = records().filter((r) => r.msg === 'the federated bundle is refreshed from its endpoint again');
    assert.equal(back.length, 1);
    assert.equal(back[0]!.level, LEVEL.info);
    assert.equal(back[0]!['failedAttempts'], 5);
    assert.equal(back[0]!['failingFor'], formatDuration(clock.now() - since));
  });
});

test("a poll storing new roots of a trust domain that hosts another relationship's https_spiffe endpoint polls that one at once if it is failing (stubbed endpoints)", async (t) => {
  const host = new TestCa('host.example');
  const partner = new TestCa('partner.org');
  t.after(() => [host, partner].forEach((c) => c.dispose()));
  const [hostRel, hostedRel] = compileRelationships(
    {
      'host.example': { bundle_endpoint_url: 'https://host.example/', bundle_endpoint_profile: 'https_web' },
      'partner.org': { bundle_endpoint_url: 'https://host.example/partner', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://host.example/bundles' },
    },
    'example.org',
  );
  await withDatastore(async ({ ds, clock }) => {
    // Each endpoint as a fetch needs it: host.example's answers while `hostUp`; partner.org's only with host.example's
    // roots to authenticate it.
    let hostUp = false;
    const calls = { host: 0, hosted: 0 };
    const fetch = async (rel: FederationRelationship, anchors: readonly Buffer[] | undefined): Promise<FederatedBundleDocument> => {
      if (rel.trustDomain === 'host.example') {
        calls.host++;
        if (!hostUp) throw new Error('connection refused');
        return { bundle: host.bundle(1), ignored: [], unreadableTypes: 0 };
      }
      calls.hosted++;
      if (anchors === undefined) throw new Error('no bundle of host.example is stored');
      return { bundle: partner.bundle(1), ignored: [], unreadableTypes: 0 };
    };
    const poller = new FederatedBundlePoller([hostRel!, hostedRel!], ds, clock, silentLogger(), fetch);
    t.after(() => poller.stop());
    poller.start();
    clock.advance(0);
    await Promise.all([poller.pending('host.example'), poller.pending('partner.org')]);
    assert.ok(poller.status('partner.org')!.lastError, 'nothing authenticates the hosted endpoint yet');
    const retryAt = poller.status('partner.org')!.nextPollAt!;

    hostUp = true;
    await poller.refresh('host.example');
    assert.ok(await ds.getBundle('host.example'));
    // Before its retry is due: the hosted relationship's poll comes now.
    assert.ok(clock.now() < retryAt);
    clock.advance(0);
    const poll = poller.pending('partner.org');
    assert.ok(poll, 'the hosted relationship is polled at once, not at its retry');
    await poll;
    assert.equal(poller.status('partner.org')!.lastError, undefined);
    assert.deepEqual((await ds.getBundle('partner.org'))!.x509Authorities, [partner.rootDer]);
    assert.equal(calls.hosted, 2);

    // host.example's next poll changes nothing: no bundle stored, nothing polled out of turn.
    const next = poller.status('partner.org')!.nextPollAt;
    await poller.refresh('host.example');
    clock.advance(0);
    assert.equal(poller.pending('partner.org'), undefined);
    assert.equal(poller.status('partner.org')!.nextPollAt, next);
  });
});

test('a partner\'s x509-svid key read with a flaw (a kid) is used, and its warning does not say it was left out (real SPIFFE document, stubbed endpoint, fake clock)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const doc = JSON.parse(bundleToSpiffeJson(ca.bundle(1))) as { keys: Array<Record<string, unknown>> };
    doc.keys[0]!['kid'] = 'root-1';
    const read = federatedBundleFromSpiffeJson('partner.org', JSON.stringify(doc));
    assert.deepEqual(read.ignored, ['SPIFFE bundle for partner.org: keys[0]: an x509-svid key must not have a kid; the kid is ignored']);
    const { log, records } = capturingLogger('server');
    const poller = new FederatedBundlePoller([REL!], ds, clock, log, async () => read);
    t.after(() => poller.stop());
    poller.start();
    clock.advance(0);
    await poller.pending('partner.org');
    assert.deepEqual((await ds.getBundle('partner.org'))?.x509Authorities, ca.bundle(1).x509Authorities, 'the key is used');
    const warned = records().filter((r) => r.level === LEVEL.warn && r['ignored'] !== undefined);
    assert.equal(warned.length, 1);
    assert.doesNotMatch(warned[0]!.msg, /they are left out/);
    assert.match(warned[0]!.msg, /leaves out or reads with a flaw, as each line of ignored says/);
  });
});

test('keys left out of a partner\'s bundle are a warning when the set changes (first poll, another set, back after none), at debug on the polls that serve the same ones (stubbed endpoint, fake clock)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const eddsa = 'bundle of partner.org: keys[1]: a jwt-svid key of type "OKP", which meshid cannot use; the key is ignored';
    const noX5c = 'bundle of partner.org: keys[2]: an x509-svid key must have an x5c; the key is ignored';
    const served: string[][] = [[eddsa], [eddsa], [eddsa], [noX5c, eddsa], [eddsa, noX5c], [], [eddsa]];
    let poll = 0;
    const fetch = async (): Promise<FederatedBundleDocument> => ({ bundle: ca.bundle(1), ignored: served[poll++]!, unreadableTypes: 1 });
    const { log, records } = capturingLogger('server');
    const poller = new FederatedBundlePoller([REL!], ds, clock, log, fetch);
    t.after(() => poller.stop());
    poller.start();
    for (let i = 0; i < served.length; i++) {
      clock.advance(i === 0 ? 0 : DEFAULT_REFRESH_MS);
      await poller.pending('partner.org');
    }
    assert.equal(poll, served.length);
    const leftOut = records()
      .filter((r) => r.msg === "the partner's bundle holds keys meshid leaves out or reads with a flaw, as each line of ignored says; the rest is applied")
      .map((r) => [r.level, r['ignored']]);
    assert.deepEqual(leftOut, [
      [LEVEL.warn, [eddsa]],
      [LEVEL.debug, [eddsa]],
      [LEVEL.debug, [eddsa]],
      [LEVEL.warn, [noX5c, eddsa]],
      [LEVEL.debug, [eddsa, noX5c]],
      [LEVEL.warn, [eddsa]],
    ]);
  });
});

test('an https_spiffe partner revoking every root is retried after 30 s, then backs off from there: it is failing, not freshly so (stubbed endpoint, fake clock)', async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    const { endpoint, poller } = pollerOnStub(t, SPIFFE_REL!, ds, clock);
    poller.start();
    endpoint.next = () => ca.bundle(1);
    clock.advance(0);
    await poller.pending('partner.org');
    endpoint.next = () => ({ ...ca.bundle(2), x509Authorities: [] });
    await poller.refresh('partner.org');
    assert.ok(poller.status('partner.org')!.lastError, 'nothing is left to authenticate the endpoint with');
    assert.equal(poller.status('partner.org')!.nextPollAt, clock.now() + FIRST_RETRY_MS, 'retried after 30 s, neither at once nor at the refresh interval');
    endpoint.next = () => {
      throw new Error('certificate verify failed');
    };
    clock.advance(FIRST_RETRY_MS);
    await poller.pending('partner.org');
    assert.equal(poller.status('partner.org')!.nextPollAt, clock.now() + 2 * FIRST_RETRY_MS, 'the second failure in a row waits twice as long');
  });
});

test("a poll of an admin API relationship deleted from the datastore while it fetched stores nothing (stubbed endpoint)", async (t) => {
  const ca = partnerCa(t);
  await withDatastore(async ({ ds, clock }) => {
    await storeRelationship(ds, REL!);
    const poller = new FederatedBundlePoller([], ds, clock, silentLogger(), async () => {
      // Another admin call's delete commits while this fetch is under way, before it tells the poller.
      await ds.deleteFederationRelationship('partner.org');
      return { bundle: ca.bundle(1), ignored: [], unreadableTypes: 0 };
    });
    t.after(() => poller.stop());
    poller.set(REL!, 'api');
    await poller.refresh('partner.org');
    assert.equal(await ds.getBundle('partner.org'), undefined, 'no bundle outlives its deleted relationship');
    assert.ok(poller.status('partner.org')!.lastError);
  });
});
