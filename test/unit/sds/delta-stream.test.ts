import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import {
  dataSourceText,
  decodeDeltaResources,
  DeltaClient,
  envoyNode,
  SECRET_TYPE_URL,
  spiffeTrustDomains,
  type DeltaDiscoveryResponse,
} from '../../support/sds-client.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import {
  APP_A,
  APP_A2,
  APP_B,
  as,
  eventually,
  FOREIGN_TD,
  SELECTOR_A,
  SELECTOR_B,
  startSdsHarness,
  TD,
  trustDomainsForSuite,
  UNREGISTERED,
  registerA,
  registerAFederatingLarge,
} from './sds-harness.js';

const NODE = envoyNode();

/** The shape rules Envoy enforces (SPEC-NOTES §11), checked on every response a test looks at. */
function shape(response: DeltaDiscoveryResponse): { versions: Map<string, string>; removed: string[] } {
  assert.equal(response.type_url, SECRET_TYPE_URL);
  assert.ok(response.nonce, 'nonce is required');
  const decoded = decodeDeltaResources(response);
  const names = decoded.map((r) => r.name);
  const removed = response.removed_resources ?? [];
  assert.equal(new Set(names).size, names.length, 'a name appears once in resources');
  assert.equal(new Set(removed).size, removed.length, 'a name appears once in removed_resources');
  for (const n of names) assert.ok(!removed.includes(n), `${n} is not both sent and removed`);
  for (const r of decoded) {
    assert.equal(r.secret.name, r.name, 'Resource.name = Secret.name');
    assert.ok(r.version, 'per-resource version');
  }
  for (const r of response.resources ?? []) assert.equal(r.resource?.type_url, SECRET_TYPE_URL);
  return { versions: new Map(decoded.map((r) => [r.name, r.version])), removed };
}

describe('SDS DeltaSecrets (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  const { withHarness } = suite;

  it('versions are content-derived: two streams of one identity see the same per-resource versions', async () => {
    await withHarness(registerA, async (h) => {
      const one = new DeltaClient(h.client, as(SELECTOR_A));
      const two = new DeltaClient(h.client, as(SELECTOR_A));
      one.request({ node: NODE, subscribe: ['default', 'ROOTCA'] });
      two.request({ node: NODE, subscribe: ['ROOTCA', 'default'] });
      const v1 = shape(await one.next()).versions;
      const v2 = shape(await two.next()).versions;
      assert.deepEqual([...v1.keys()].sort(), ['ROOTCA', 'default']);
      for (const [name, version] of v1) assert.equal(v2.get(name), version);
      one.cancel();
      two.cancel();
    });
  });

  it('initial_resource_versions with the current versions resends nothing; a stale version is resent', async () => {
    await withHarness(registerA, async (h) => {
      const first = new DeltaClient(h.client, as(SELECTOR_A));
      first.request({ node: NODE, subscribe: ['default', 'ROOTCA'] });
      const current = shape(await first.next()).versions;
      first.cancel();

      const reconnect = new DeltaClient(h.client, as(SELECTOR_A));
      reconnect.request({ node: NODE, subscribe: ['default', 'ROOTCA'], initialVersions: Object.fromEntries(current) });
      reconnect.request({ subscribe: ['ALL'] }); // barrier
      const r = shape(await reconnect.next());
      assert.deepEqual([...r.versions.keys()], ['ALL'], 'only the newly subscribed name, nothing resent');
      reconnect.cancel();

      const stale = new DeltaClient(h.client, as(SELECTOR_A));
      stale.request({ node: NODE, subscribe: ['default', 'ROOTCA'], initialVersions: { default: 'stale', ROOTCA: current.get('ROOTCA')! } });
      const s = shape(await stale.next());
      assert.deepEqual([...s.versions], [['default', current.get('default')]]);
      stale.cancel();
    });
  });

  it('an ACK costs no state recomputation; a rotation after it is still delivered', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default'] });
      const r1 = await client.next();
      const calls = h.cache.snapshotCalls;
      client.ack(r1);
      await eventually(() => h.service.stats().acks === 1, 'the ACK to be counted');
      assert.equal(h.cache.snapshotCalls, calls, 'an ACK recomputed the state');
      h.cache.rotate(APP_A);
      assert.deepEqual([...shape(await client.next()).versions.keys()], ['default']);
      client.cancel();
    });
  });

  it('a rotation sends only the changed secret, with a new version', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default', 'ROOTCA'] });
      const r1 = await client.next();
      const v1 = shape(r1).versions;
      client.ack(r1);
      h.cache.rotate(APP_A);
      const r2 = shape(await client.next());
      assert.deepEqual([...r2.versions.keys()], ['default']);
      assert.notEqual(r2.versions.get('default'), v1.get('default'));
      assert.deepEqual(r2.removed, []);
      client.cancel();
    });
  });

  it('a new entry still waiting for its SVID does not take default away', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default'] });
      const r1 = await client.next();
      const v1 = shape(r1).versions;
      client.ack(r1);
      h.cache.addEntry(SELECTOR_A, APP_A2, { issued: false });
      h.cache.rotate(APP_A);
      // Had default been withdrawn while APP_A2 waits, this would be removed_resources: ["default"].
      const r2 = shape(await client.next());
      assert.deepEqual(r2.removed, []);
      assert.deepEqual([...r2.versions.keys()], ['default']);
      assert.notEqual(r2.versions.get('default'), v1.get('default'));
      client.cancel();
    });
  });

  it('a removed entitlement and an ended federation come back in removed_resources', async () => {
    await withHarness(
      (c) => {
        c.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
        c.addEntry(SELECTOR_A, APP_A2);
        c.setFederatedBundle(suite.foreign.bundle());
      },
      async (h) => {
        const client = new DeltaClient(h.client, as(SELECTOR_A));
        client.request({ node: NODE, subscribe: [APP_A, APP_A2, `spiffe://${FOREIGN_TD}`, 'ALL'] });
        const r1 = await client.next();
        const first = shape(r1);
        assert.equal(first.versions.size, 4);
        assert.deepEqual(spiffeTrustDomains(decodeDeltaResources(r1).find((r) => r.name === 'ALL')!.secret).map((d) => d.name), [TD, FOREIGN_TD].sort());
        client.ack(r1);

        h.cache.removeEntry(APP_A2);
        const r2 = await client.next();
        assert.deepEqual(shape(r2), { versions: new Map(), removed: [APP_A2] });
        client.ack(r2);

        h.cache.setFederatesWith(APP_A, []);
        const r3 = shape(await client.next());
        assert.deepEqual(r3.removed, [`spiffe://${FOREIGN_TD}`]);
        assert.deepEqual([...r3.versions.keys()], ['ALL'], 'ALL changed content: own domain only now');
        client.cancel();
      },
    );
  });

  it('a subscribed name the client never got is not removed while it does not resolve, and is sent when it does', async () => {
    // Its signing failed and is retried: the first response does not wait for it (that wait is tested apart).
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A, { issued: false, signingFailed: true, federatesWith: [FOREIGN_TD] }), async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      // default waits for its SVID, the federated trust domain for its bundle, APP_A2 for its entry; APP_B is B's.
      // A removal would make Envoy's SdsApi mark the secret ready without one, so the listener would warm without it.
      client.request({ node: NODE, subscribe: ['default', `spiffe://${FOREIGN_TD}`, APP_A2, APP_B, 'ROOTCA'] });
      const r1 = shape(await client.next());
      assert.deepEqual({ names: [...r1.versions.keys()], removed: r1.removed }, { names: ['ROOTCA'], removed: [] });
      client.ack(client.received[0]!);

      h.cache.rotate(APP_A); // the SVID is issued
      const r2 = shape(await client.next());
      assert.deepEqual({ names: [...r2.versions.keys()], removed: r2.removed }, { names: ['default'], removed: [] });
      client.ack(client.received[1]!);

      h.cache.setFederatedBundle(suite.foreign.bundle());
      const r3 = shape(await client.next());
      assert.deepEqual({ names: [...r3.versions.keys()], removed: r3.removed }, { names: [`spiffe://${FOREIGN_TD}`], removed: [] });
      client.ack(client.received[2]!);

      h.cache.addEntry(SELECTOR_A, APP_A2);
      const r4 = shape(await client.next());
      assert.deepEqual({ names: [...r4.versions.keys()], removed: r4.removed }, { names: [APP_A2], removed: [] }, 'APP_B is never named');
      client.cancel();
    });
  });

  it('a stream whose names all wait for their secrets gets no response until one resolves, as on StreamSecrets', async () => {
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A, { issued: false, signingFailed: true }), async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default'] });
      h.cache.notify();
      // Requests are answered in order: had the first one been answered, its answer would come first.
      client.request({ subscribe: ['ROOTCA'] });
      const r1 = shape(await client.next());
      assert.deepEqual({ names: [...r1.versions.keys()], removed: r1.removed }, { names: ['ROOTCA'], removed: [] });
      client.ack(client.received[0]!);
      h.cache.rotate(APP_A);
      assert.deepEqual([...shape(await client.next()).versions.keys()], ['default']);
      assert.equal(client.received.length, 2);
      client.cancel();
    });
  });

  it('a name the client holds is removed once when it stops resolving, and sent again when it comes back', async () => {
    await withHarness(
      (c) => {
        c.addEntry(SELECTOR_A, APP_A);
        c.addEntry(SELECTOR_A, APP_A2);
      },
      async (h) => {
        const client = new DeltaClient(h.client, as(SELECTOR_A));
        client.request({ node: NODE, subscribe: [APP_A2, 'ROOTCA'] });
        const r1 = await client.next();
        const rootca = shape(r1).versions.get('ROOTCA')!;
        client.ack(r1);
        h.cache.removeEntry(APP_A2);
        // Subscribing again around the removal, before or after it is pushed, still tells the client once.
        client.request({ subscribe: [APP_A2] });
        const r2 = await client.next();
        assert.deepEqual(shape(r2), { versions: new Map(), removed: [APP_A2] });
        client.ack(r2);
        h.cache.notify();
        client.request({ subscribe: ['ROOTCA'] }); // barrier
        assert.deepEqual(shape(await client.next()), { versions: new Map([['ROOTCA', rootca]]), removed: [] }, 'not told twice');
        h.cache.addEntry(SELECTOR_A, APP_A2);
        const r4 = shape(await client.next());
        assert.deepEqual([...r4.versions.keys()], [APP_A2]);
        client.cancel();

        // On reconnect, what initial_resource_versions declares is held: gone since, it is removed. APP_B never was.
        h.cache.removeEntry(APP_A2);
        const again = new DeltaClient(h.client, as(SELECTOR_A));
        again.request({
          node: NODE,
          subscribe: [APP_A2, APP_B, 'ROOTCA'],
          initialVersions: { [APP_A2]: r4.versions.get(APP_A2)!, ROOTCA: rootca },
        });
        assert.deepEqual(shape(await again.next()), { versions: new Map(), removed: [APP_A2] });
        again.cancel();
      },
    );
  });

  it('unsubscribing sends nothing and stops pushes for that name; unsubscribing an unknown name is ignored', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default', 'ROOTCA'] });
      client.ack(await client.next());
      client.request({ unsubscribe: ['default', 'never-subscribed'] });
      // Unsubscribing is not answered; this subscription is, so its answer shows the unsubscribe was applied.
      client.request({ subscribe: ['ALL'] });
      const r2 = shape(await client.next());
      assert.deepEqual(r2, { versions: new Map([['ALL', r2.versions.get('ALL')!]]), removed: [] });
      h.cache.rotate(APP_A);
      h.cache.setOwnBundle({ ...suite.ca.bundle(2), x509Authorities: [suite.ca.rootDer, suite.foreign.rootDer] }); // barrier
      const r3 = shape(await client.next());
      assert.deepEqual([...r3.versions.keys()].sort(), ['ALL', 'ROOTCA'], 'the rotated default is not pushed');
      assert.equal(client.received.length, 3);
      client.cancel();
    });
  });

  it('a name subscribed again is resent even though the client had it', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default'] });
      const v1 = shape(await client.next()).versions;
      client.request({ subscribe: ['default'] });
      const v2 = shape(await client.next()).versions;
      assert.deepEqual(v2, v1);
      client.cancel();
    });
  });

  it('a NACK is counted and nothing is resent until the next change; subscriptions are honoured with a stale nonce', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default'] });
      const r1 = await client.next();
      client.nack(r1);
      await eventually(() => h.service.stats().nacks === 1, 'the NACK to be counted');
      h.cache.rotate(APP_A);
      const r2 = await client.next();
      assert.notEqual(shape(r2).versions.get('default'), shape(r1).versions.get('default'));
      client.ack(r2);
      // A request with an old nonce still changes the subscription.
      client.request({ nonce: r1.nonce!, subscribe: ['ROOTCA'] });
      const r3 = shape(await client.next());
      assert.deepEqual([...r3.versions.keys()], ['ROOTCA']);
      assert.equal(h.service.stats().responses, 3);
      assert.equal(h.service.stats().acks, 1);
      client.cancel();
    });
  });

  it('an empty first request is the legacy wildcard: every entitled secret, and removals as entitlements go', async () => {
    await withHarness(
      (c) => {
        c.addEntry(SELECTOR_A, APP_A);
        c.addEntry(SELECTOR_A, APP_A2);
        c.addEntry(SELECTOR_B, APP_B);
      },
      async (h) => {
        const client = new DeltaClient(h.client, as(SELECTOR_A));
        client.request({ node: NODE });
        const r1 = await client.next();
        assert.deepEqual([...shape(r1).versions.keys()].sort(), ['ALL', 'ROOTCA', APP_A, APP_A2, `spiffe://${TD}`, 'default'].sort());
        client.ack(r1);
        h.cache.removeEntry(APP_A2);
        const r2 = shape(await client.next());
        assert.deepEqual(r2.removed, [APP_A2]);
        client.cancel();
      },
    );
  });

  it('a first request that only unsubscribes is still the legacy wildcard; it ends when `*` is unsubscribed', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, unsubscribe: ['never-subscribed'] });
      const r1 = shape(await client.next());
      assert.ok(r1.versions.has('default') && r1.versions.has('ROOTCA'), [...r1.versions.keys()].join(' '));
      client.ack(client.received[0]!);
      client.request({ unsubscribe: ['*'], subscribe: ['ROOTCA'] });
      assert.deepEqual([...shape(await client.next()).versions.keys()], ['ROOTCA'], 'a subscribed name is resent');
      // The wildcard has ended: a new entitlement is not pushed, so the next response answers the next request.
      h.cache.addEntry(SELECTOR_A, APP_A2);
      client.request({ subscribe: ['ROOTCA'] });
      assert.deepEqual([...shape(await client.next()).versions.keys()], ['ROOTCA']);
      client.cancel();
    });
  });

  it('secrets of more than the 4 MiB a gRPC client takes go in several responses, each secret once', async () => {
    // Eight federated trust domains of ~0.7 MB of roots each (copies of one root; size is what counts here): one
    // answer of all nine secrets is ~5.6 MB, which this client (grpc-js's default 4 MiB, as grpc-go's and Envoy's
    // google_grpc) refuses as RESOURCE_EXHAUSTED, for ever on every reconnect.
    const domains = Array.from({ length: 8 }, (_, i) => `fed${i}.example`);
    await withHarness(
      registerAFederatingLarge(suite.foreign, domains),
      async (h) => {
        const names = ['default', ...domains.map((td) => `spiffe://${td}`)];
        const client = new DeltaClient(h.client, as(SELECTOR_A));
        client.request({ node: NODE, subscribe: names });
        const got = new Map<string, string>();
        let responses = 0;
        while (got.size < names.length) {
          const r = await client.next();
          responses++;
          for (const [name, version] of shape(r).versions) {
            assert.ok(!got.has(name), `${name} is sent once`);
            got.set(name, version);
          }
          client.ack(r);
        }
        assert.ok(responses >= 2, `${responses} response(s)`);
        assert.deepEqual([...got.keys()].sort(), [...names].sort());
        // Nothing more is due: a barrier request is answered with its own name alone.
        client.request({ subscribe: ['ROOTCA'] });
        assert.deepEqual([...shape(await client.next()).versions.keys()], ['ROOTCA']);
        client.cancel();
      },
    );
  });

  it('a NACK of any part of a split longer than 16 parts is logged and counted; a client that never answers keeps a bounded set', async () => {
    // Twenty federated trust domains of ~0.7 MB of roots each: two never fit in one ~1 MiB response, so the answer is
    // twenty-one parts written back to back, and the client answers only once it has them all, as Envoy does when
    // its ACKs trail the agent's writes.
    const domains = Array.from({ length: 20 }, (_, i) => `fed${i}.example`);
    const { log, records } = capturingLogger('agent');
    const h = await startSdsHarness(
      suite.ca,
      registerAFederatingLarge(suite.foreign, domains),
      {},
      log,
    );
    try {
      const names = ['default', ...domains.map((td) => `spiffe://${td}`)];
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: names });
      const parts: DeltaDiscoveryResponse[] = [];
      const got = new Set<string>();
      while (got.size < names.length) {
        const r = await client.next(20_000);
        parts.push(r);
        for (const name of shape(r).versions.keys()) got.add(name);
      }
      assert.ok(parts.length > 17, `${parts.length} parts`);
      client.nack(parts[0]!, 'Failed to load trusted CA certificates from <inline>');
      for (const r of parts.slice(1)) client.ack(r);
      const answered = (): number => h.service.stats().acks + h.service.stats().nacks + h.service.stats().staleRequests;
      await eventually(() => answered() === parts.length, 'every answer to be handled');
      assert.deepEqual(
        { acks: h.service.stats().acks, nacks: h.service.stats().nacks, stale: h.service.stats().staleRequests },
        { acks: parts.length - 1, nacks: 1, stale: 0 },
        'no part\'s answer is taken for stale',
      );
      const nacks = records().filter((r) => r.level === LEVEL.warn && /NACK/.test(r.msg));
      assert.deepEqual(nacks.map((r) => [r['nonce'], r['detail']]), [[parts[0]!.nonce, 'Failed to load trusted CA certificates from <inline>']]);

      // A client that stops answering: pushes keep their nonces as long as a split's parts did, then the oldest go.
      const pushes: DeltaDiscoveryResponse[] = [];
      for (let i = 0; i < 16 + parts.length + 1; i++) {
        h.cache.rotate(APP_A);
        pushes.push(await client.next());
      }
      client.ack(pushes[0]!);
      client.ack(pushes[pushes.length - 1]!);
      await eventually(() => answered() === parts.length + 2, 'both answers');
      assert.equal(h.service.stats().staleRequests, 1, 'the oldest unanswered push was let go');
      client.cancel();
    } finally {
      await h.close();
    }
  });

  it('duplicate names in one request yield one resource', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: NODE, subscribe: ['default', 'default', APP_A, APP_A] });
      const r1 = shape(await client.next());
      assert.deepEqual([...r1.versions.keys()].sort(), [APP_A, 'default'].sort());
      const pem = dataSourceText(decodeDeltaResources(client.received[0]!)[0]!.secret.tls_certificate?.certificate_chain);
      assert.match(pem, /^-----BEGIN CERTIFICATE-----/);
      client.cancel();
    });
  });

  it('refuses bad input: PERMISSION_DENIED, another type_url, 10,000 names', async () => {
    await withHarness(registerA, async (h) => {
      const stranger = new DeltaClient(h.client, as(UNREGISTERED));
      stranger.request({ node: NODE, subscribe: ['default'] });
      assert.equal((await stranger.status).code, status.PERMISSION_DENIED);

      const wrongType = new DeltaClient(h.client, as(SELECTOR_A));
      wrongType.send({ node: NODE, type_url: 'type.googleapis.com/envoy.config.listener.v3.Listener', resource_names_subscribe: ['default'] });
      assert.equal((await wrongType.status).code, status.INVALID_ARGUMENT);
      assert.equal(wrongType.received.length, 0);

      const tooMany = new DeltaClient(h.client, as(SELECTOR_A));
      tooMany.request({ node: NODE, subscribe: Array.from({ length: 10_000 }, (_, i) => `n${i}`) });
      assert.equal((await tooMany.status).code, status.INVALID_ARGUMENT);

      // Growing past the limit one request at a time is refused too.
      const creeping = new DeltaClient(h.client, as(SELECTOR_A));
      creeping.request({ node: NODE, subscribe: [...Array.from({ length: 999 }, (_, i) => `a${i}`), 'default'] });
      await creeping.next();
      creeping.request({ subscribe: ['one-more'] });
      assert.equal((await creeping.status).code, status.INVALID_ARGUMENT);
      await eventually(() => h.cache.listenerCount() === 0, 'refused streams to leave no listener');
    });
  });

  it('streams dropped at any point leave no listener', async () => {
    await withHarness(registerA, async (h) => {
      const clients = Array.from({ length: 300 }, () => new DeltaClient(h.client, as(SELECTOR_A)));
      clients.forEach((c) => c.request({ node: NODE, subscribe: ['default'] }));
      await Promise.all(clients.map((c) => c.next(20_000)));
      assert.equal(h.cache.listenerCount(), 300);
      clients.forEach((c, i) => (i % 2 === 0 ? c.cancel() : c.end()));
      await eventually(() => h.cache.listenerCount() === 0 && h.service.stats().deltaStreams === 0, 'cleanup', 20_000);
    });
  });
});
