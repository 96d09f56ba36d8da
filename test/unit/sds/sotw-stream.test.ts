import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { createLogger } from '../../../src/common/log.js';
import { dataSourceText, SECRET_TYPE_URL, secretsByName, SotwClient, type DiscoveryResponse } from '../../support/sds-client.js';
import { APP_A, APP_A2, APP_B, as, eventually, FOREIGN_TD, SELECTOR_A, SELECTOR_B, startSdsHarness, TD, trustDomainsForSuite, UNREGISTERED, registerA } from './sds-harness.js';


function names(response: DiscoveryResponse): string[] {
  return [...secretsByName(response).keys()].sort();
}

function leafPem(response: DiscoveryResponse, name: string): string {
  return dataSourceText(secretsByName(response).get(name)?.tls_certificate?.certificate_chain).split('-----END CERTIFICATE-----')[0]!;
}

describe('SDS StreamSecrets (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  const { withHarness } = suite;

  it('an ACK, and a cache notification that changes nothing, send no new response', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      client.ack(r1, ['default']);
      h.cache.notify();
      // Barrier: a subscription change carrying r1's nonce is answered only if r1 is still the latest response.
      client.ack(r1, ['default', 'ROOTCA']);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ROOTCA', 'default']);
      assert.notEqual(r2.nonce, r1.nonce);
      assert.notEqual(r2.version_info, r1.version_info);
      assert.equal(h.service.stats().responses, 2);
      assert.equal(h.service.stats().acks, 2);
      client.cancel();
    });
  });

  it('an ACK or NACK that keeps the subscription costs no state recomputation; a subscription change does', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      const calls = h.cache.snapshotCalls;
      client.ack(r1, ['default']);
      await eventually(() => h.service.stats().acks === 1, 'the ACK to be counted');
      assert.equal(h.cache.snapshotCalls, calls, 'an ACK recomputed the state');
      client.ack(r1, ['default', 'ROOTCA']);
      const r2 = await client.next();
      assert.ok(h.cache.snapshotCalls > calls);
      const after = h.cache.snapshotCalls;
      client.nack(r2, ['default', 'ROOTCA'], r1.version_info ?? '');
      await eventually(() => h.service.stats().nacks === 1, 'the NACK to be counted');
      assert.equal(h.cache.snapshotCalls, after, 'a NACK recomputed the state');
      client.cancel();
    });
  });

  it('a NACK is counted, the same version is not resent, and the next change is sent', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      client.nack(r1, ['default'], '');
      await eventually(() => h.service.stats().nacks === 1, 'the NACK to be counted');
      h.cache.notify();
      h.cache.rotate(APP_A);
      const r2 = await client.next();
      assert.notEqual(leafPem(r2, 'default'), leafPem(r1, 'default'), 'the response after the NACK is the rotation');
      assert.equal(h.service.stats().responses, 2);
      client.cancel();
    });
  });

  it('a resource_names change carried in a NACK is honoured', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      client.nack(r1, ['default', 'ROOTCA'], '');
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ROOTCA', 'default']);
      assert.equal(h.service.stats().nacks, 1);
      client.cancel();
    });
  });

  it('a client that NACKs every response gets exactly one response per change and keeps its stream', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      let last = await client.next();
      for (let i = 0; i < 10; i++) {
        client.nack(last, ['default'], '', `bad secret ${i}`);
        // A NACK that arrives after the next push would answer an old nonce (stale): let it land first.
        await eventually(() => h.service.stats().nacks === i + 1, `NACK ${i + 1} to be counted`);
        h.cache.rotate(APP_A);
        last = await client.next();
      }
      client.nack(last, ['default'], '');
      await eventually(() => h.service.stats().nacks === 11, 'every NACK to be counted');
      assert.equal(h.service.stats().responses, 11);
      assert.equal(client.received.length, 11);
      client.cancel();
    });
  });

  it('a request with a stale nonce is ignored, subscription included', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      h.cache.rotate(APP_A);
      const r2 = await client.next();
      client.ack(r1, ['default', 'ROOTCA']); // answers r1, overtaken by r2
      client.ack(r2, ['default', 'ALL']);
      const r3 = await client.next();
      assert.deepEqual(names(r3), ['ALL', 'default']);
      assert.equal(h.service.stats().staleRequests, 1);
      assert.equal(h.service.stats().responses, 3);
      client.cancel();
    });
  });

  it('a subscription change adds a name on the same stream; a re-added name is sent again', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      client.ack(r1, ['default', 'ROOTCA']);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ROOTCA', 'default']);
      client.ack(r2, ['ROOTCA']); // drop default: nothing to send
      client.ack(r2, ['ROOTCA', 'default']); // re-add: sent again although unchanged
      const r3 = await client.next();
      assert.deepEqual(names(r3), ['ROOTCA', 'default']);
      assert.equal(leafPem(r3, 'default'), leafPem(r1, 'default'));
      assert.equal(h.service.stats().responses, 3);
      client.cancel();
    });
  });

  it('an empty first request is a wildcard: every secret the caller is entitled to, following new entries', async () => {
    await withHarness(
      (c) => {
        c.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
        c.addEntry(SELECTOR_B, APP_B);
        c.setFederatedBundle(suite.foreign.bundle());
      },
      async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe([]);
        const r1 = await client.next();
        assert.deepEqual(names(r1), ['ALL', 'ROOTCA', APP_A, `spiffe://${TD}`, `spiffe://${FOREIGN_TD}`, 'default'].sort());
        assert.equal(secretsByName(r1).get('default')?.name, 'default', 'an alias comes back under the alias');
        client.ack(r1, []);
        h.cache.addEntry(SELECTOR_A, APP_A2);
        const r2 = await client.next();
        assert.ok(names(r2).includes(APP_A2));
        assert.ok(!names(r2).includes(APP_B));
        client.cancel();
      },
    );
  });

  it('after an explicit `*`, an empty list unsubscribes everything; the legacy wildcard does not come back (xds_protocol)', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['*']);
      const r1 = await client.next();
      assert.ok(names(r1).includes('default'));
      client.ack(r1, []);
      await eventually(() => h.service.stats().acks === 1, 'the ACK to be applied');
      // Under a wildcard this entry would be pushed at once, with a new nonce that makes the next request stale.
      h.cache.addEntry(SELECTOR_A, APP_A2);
      client.ack(r1, ['ROOTCA']);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ROOTCA']);
      assert.equal(client.received.length, 2, 'nothing was sent while the client subscribed to nothing');
      client.cancel();
    });
  });

  it('a secret the legacy wildcard delivered is resent when a later request names it; repeating that list sends nothing', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe([]);
      const r1 = await client.next();
      assert.ok(names(r1).includes(APP_A));
      // xds_protocol: newly requested resources are resent, "even if [the server] previously sent those resources
      // without having been asked for them".
      client.ack(r1, [APP_A]);
      const r2 = await client.next();
      assert.deepEqual(names(r2), [APP_A]);
      assert.equal(leafPem(r2, APP_A), leafPem(r1, APP_A), 'unchanged, and sent again');
      client.ack(r2, [APP_A]);
      await eventually(() => h.service.stats().acks === 2, 'the ACK to be applied');
      assert.equal(h.service.stats().responses, 2, 'the ACK repeating the list sent nothing');
      client.cancel();
    });
  });

  it('a secret an explicit `*` delivered is resent when a later request names it next to `*`', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['*']);
      const r1 = await client.next();
      client.ack(r1, ['*', APP_A]);
      const r2 = await client.next();
      assert.deepEqual(names(r2), names(r1), 'the whole state again, as every StreamSecrets response');
      assert.notEqual(r2.nonce, r1.nonce);
      client.ack(r2, ['*', APP_A]);
      await eventually(() => h.service.stats().acks === 2, 'the ACK to be applied');
      assert.equal(h.service.stats().responses, 2, 'the ACK repeating the list sent nothing');
      // Reordering the list names nothing new.
      client.ack(r2, [APP_A, '*']);
      await eventually(() => h.service.stats().acks === 3, 'the reordered ACK to be applied');
      assert.equal(h.service.stats().responses, 2, 'the same names in another order sent nothing');
      client.cancel();
    });
  });

  it('streams of one workload share the resolved state but each keeps its own nonces and subscription', async () => {
    await withHarness(registerA, async (h) => {
      const clients = [0, 1, 2].map(() => new SotwClient(h.client, as(SELECTOR_A)));
      clients.forEach((c, i) => c.subscribe(i === 2 ? ['default', 'ROOTCA'] : ['default']));
      const first = await Promise.all(clients.map((c) => c.next()));
      clients.forEach((c, i) => c.ack(first[i]!, i === 2 ? ['default', 'ROOTCA'] : ['default']));
      h.cache.rotate(APP_A);
      const [x, y, z] = await Promise.all(clients.map((c) => c.next()));
      assert.equal(x!.version_info, y!.version_info);
      assert.equal(leafPem(x!, 'default'), leafPem(y!, 'default'));
      assert.notEqual(leafPem(x!, 'default'), leafPem(first[0]!, 'default'));
      assert.deepEqual(names(z!), ['ROOTCA', 'default']);
      assert.notEqual(z!.version_info, x!.version_info);
      assert.equal(x!.nonce, y!.nonce, 'both streams count their own responses from 1');
      assert.notEqual(x!.nonce, first[0]!.nonce);
      for (const c of clients) c.cancel();
    });
  });

  it('a rotation reaches only the streams that watch the rotated SVID', async () => {
    await withHarness(
      (c) => {
        c.addEntry(SELECTOR_A, APP_A);
        c.addEntry(SELECTOR_B, APP_B);
      },
      async (h) => {
        const a = new SotwClient(h.client, as(SELECTOR_A));
        const b = new SotwClient(h.client, as(SELECTOR_B));
        const aRoots = new SotwClient(h.client, as(SELECTOR_A));
        a.subscribe(['default']);
        b.subscribe([APP_B]);
        aRoots.subscribe(['ROOTCA']);
        const [a1, b1, r1] = [await a.next(), await b.next(), await aRoots.next()];
        a.ack(a1, ['default']);
        b.ack(b1, [APP_B]);
        aRoots.ack(r1, ['ROOTCA']);

        const oldA = h.cache.svidOf(APP_A).version;
        h.cache.rotate(APP_A);
        const a2 = await a.next();
        assert.notEqual(leafPem(a2, 'default'), leafPem(a1, 'default'));
        assert.notEqual(h.cache.svidOf(APP_A).version, oldA);

        // Barriers: B's next message must be its own rotation, and the ROOTCA stream's next the ALL it asks for.
        h.cache.rotate(APP_B);
        const b2 = await b.next();
        assert.notEqual(leafPem(b2, APP_B), leafPem(b1, APP_B));
        aRoots.ack(r1, ['ROOTCA', 'ALL']);
        const r2 = await aRoots.next();
        assert.deepEqual(names(r2), ['ALL', 'ROOTCA']);
        assert.equal(b.received.length, 2);
        assert.equal(aRoots.received.length, 2);
        assert.equal(a.received.length, 2);
        a.cancel();
        b.cancel();
        aRoots.cancel();
      },
    );
  });

  it('an unknown name keeps the stream open and is delivered once an entry makes it exist', async () => {
    const later = 'spiffe://example.org/ns/default/sa/later';
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe([APP_A, later]);
      const r1 = await client.next();
      assert.deepEqual(names(r1), [APP_A]);
      client.ack(r1, [APP_A, later]);
      h.cache.addEntry(SELECTOR_A, later);
      const r2 = await client.next();
      assert.deepEqual(names(r2), [APP_A, later].sort());
      client.cancel();
    });
  });

  it('a name containing the separator of another subscription gets only what it names', async () => {
    await withHarness(registerA, async (h) => {
      const plain = new SotwClient(h.client, as(SELECTOR_A));
      plain.subscribe(['default', 'ROOTCA', APP_A]);
      assert.deepEqual(names(await plain.next()), [APP_A, 'ROOTCA', 'default'].sort());
      const crafted = new SotwClient(h.client, as(SELECTOR_A));
      crafted.subscribe(['default\nROOTCA', APP_A]);
      assert.deepEqual(names(await crafted.next()), [APP_A]);
      plain.cancel();
      crafted.cancel();
    });
  });

  it('default is served only once the default identity has its SVID, so it never names another identity', async () => {
    await withHarness(
      // Its signing failed and is retried: the first response does not wait for it (that wait is tested apart).
      (c) => c.addEntry(SELECTOR_A, APP_A, { issued: false, signingFailed: true }),
      async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe(['default', 'ROOTCA']);
        const r1 = await client.next();
        assert.deepEqual(names(r1), ['ROOTCA']);
        client.ack(r1, ['default', 'ROOTCA']);
        h.cache.rotate(APP_A); // issues it
        const r2 = await client.next();
        assert.deepEqual(names(r2), ['ROOTCA', 'default']);
        client.cancel();
      },
    );
  });

  it('a new entry still waiting for its SVID does not hold default back', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      client.ack(r1, ['default']);
      h.cache.addEntry(SELECTOR_A, APP_A2, { issued: false });
      h.cache.rotate(APP_A);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['default']);
      assert.notEqual(leafPem(r2, 'default'), leafPem(r1, 'default'), 'the rotation, not a response without default');
      client.cancel();
    });
  });

  it('a client that never ACKs gets one response per change and no more', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      await client.next();
      for (let i = 0; i < 5; i++) {
        h.cache.rotate(APP_A);
        await client.next();
      }
      h.cache.notify();
      client.send({ resource_names: ['default', 'ROOTCA'], response_nonce: client.received.at(-1)!.nonce }); // barrier
      assert.deepEqual(names(await client.next()), ['ROOTCA', 'default']);
      assert.equal(h.service.stats().responses, 7);
      client.cancel();
    });
  });

  it('an unregistered caller gets PERMISSION_DENIED without any workload.spiffe.io header being needed', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(UNREGISTERED));
      client.subscribe(['default']);
      const s = await client.status;
      assert.equal(s.code, status.PERMISSION_DENIED);
      assert.equal(client.received.length, 0);
      assert.equal(h.service.stats().deniedCalls, 1);
      // The registered caller, same absent header, is served.
      const ok = new SotwClient(h.client, as(SELECTOR_A));
      ok.subscribe(['default']);
      assert.deepEqual(names(await ok.next()), ['default']);
      ok.cancel();
    });
  });

  it('an agent with no state yet answers UNAVAILABLE', async () => {
    await withHarness(
      (c) => {
        registerA(c);
        c.isReady = false;
      },
      async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe(['default']);
        assert.equal((await client.status).code, status.UNAVAILABLE);
      },
    );
  });

  it('a caller whose last entry is removed has its stream ended with PERMISSION_DENIED', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      client.ack(await client.next(), ['default']);
      h.cache.removeEntry(APP_A);
      assert.equal((await client.status).code, status.PERMISSION_DENIED);
      await eventually(() => h.cache.listenerCount() === 0, 'the listener to be removed');
    });
  });

  it('a request for another type_url is INVALID_ARGUMENT and no Secret is sent under it', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.send({ node: { id: 'n' }, resource_names: ['default'], type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' });
      const s = await client.status;
      assert.equal(s.code, status.INVALID_ARGUMENT);
      assert.match(s.details, /type_url/);
      assert.equal(client.received.length, 0);
    });
  });

  it('an empty type_url is accepted (implicit for a single-type service) and answered with the Secret type URL', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.send({ node: { id: 'n' }, resource_names: ['default'] });
      const r1 = await client.next();
      assert.equal(r1.type_url, SECRET_TYPE_URL);
      client.cancel();
    });
  });

  it('10,000 resource names are INVALID_ARGUMENT; 1,000 (the documented limit) are accepted', async () => {
    await withHarness(registerA, async (h) => {
      const tooMany = new SotwClient(h.client, as(SELECTOR_A));
      tooMany.subscribe(Array.from({ length: 10_000 }, (_, i) => `name-${i}`));
      const s = await tooMany.status;
      assert.equal(s.code, status.INVALID_ARGUMENT);
      assert.match(s.details, /1000/);

      const atLimit = new SotwClient(h.client, as(SELECTOR_A));
      atLimit.subscribe(['default', ...Array.from({ length: 999 }, (_, i) => `name-${i}`)]);
      assert.deepEqual(names(await atLimit.next()), ['default']);
      atLimit.cancel();
    });
  });

  it('a malformed SPIFFE ID or an empty name is INVALID_ARGUMENT', async () => {
    await withHarness(registerA, async (h) => {
      for (const bad of ['spiffe://Example.org/app', 'spiffe://example.org/a//b', '']) {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        client.subscribe(['default', bad]);
        assert.equal((await client.status).code, status.INVALID_ARGUMENT, JSON.stringify(bad));
      }
    });
  });

  it('a client that half-closes ends the stream with OK and leaves no cache listener', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      await client.next();
      assert.equal(h.cache.listenerCount(), 1);
      client.end();
      assert.equal((await client.status).code, status.OK);
      await eventually(() => h.cache.listenerCount() === 0 && h.service.stats().sotwStreams === 0, 'cleanup');
    });
  });

  it('a thousand streams opened and dropped (cancel, half-close, before any request) leave no listener behind', async () => {
    await withHarness(registerA, async (h) => {
      const clients = Array.from({ length: 1000 }, () => new SotwClient(h.client, as(SELECTOR_A)));
      clients.forEach((c, i) => {
        if (i % 4 !== 3) c.subscribe(['default', 'ROOTCA']);
      });
      await Promise.all(clients.map((c, i) => (i % 4 === 3 ? Promise.resolve() : c.next(20_000))));
      await eventually(() => h.service.stats().sotwStreams === 1000, 'every stream to be admitted', 20_000);
      assert.equal(h.cache.listenerCount(), 1000);
      clients.forEach((c, i) => (i % 2 === 0 ? c.cancel() : c.end()));
      await eventually(() => h.cache.listenerCount() === 0, 'every listener to be removed', 20_000);
      assert.equal(h.service.stats().sotwStreams, 0);
      assert.equal(h.service.stats().streamsOpened, 1000);
      // A rotation after all that reaches nobody and breaks nothing.
      h.cache.rotate(APP_A);
      const fresh = new SotwClient(h.client, as(SELECTOR_A));
      fresh.subscribe(['default']);
      await fresh.next();
      fresh.cancel();
    });
  });
});

describe('SDS logging (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  it('a NACK is logged with Envoy\'s code and detail, and no log line ever carries a key or certificate', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const h = await startSdsHarness(suite.ca, (c) => c.addEntry(SELECTOR_A, APP_A), {}, createLogger({ name: 'test', level: 'debug', pretty: false, destination }));
    try {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA']);
      const r1 = await client.next();
      // SotwClient's NACK carries code 13 (INTERNAL), as Envoy's does for a secret it cannot load: the code is what
      // tells an operator an INTERNAL from an INVALID_ARGUMENT.
      client.nack(r1, ['default', 'ROOTCA'], '', 'Failed to load certificate chain from <inline>');
      await eventually(() => lines.some((l) => l.includes('NACK')), 'the NACK log line');
      const nack = JSON.parse(lines.find((l) => l.includes('NACK'))!) as Record<string, unknown>;
      assert.equal(nack['code'], 13);
      assert.equal(nack['detail'], 'Failed to load certificate chain from <inline>');
      assert.equal(nack['nonce'], r1.nonce);
      assert.equal(nack['subsystem'], 'sds');
      const unregistered = new SotwClient(h.client, as(UNREGISTERED));
      unregistered.subscribe(['default']);
      await unregistered.status;
      client.cancel();
      for (const line of lines) assert.doesNotMatch(line, /BEGIN|PRIVATE|CERTIFICATE-----/);
    } finally {
      await h.close();
    }
  });

  it('a long NACK detail of characters outside the BMP is logged cut between characters, as valid UTF-8, and the stream goes on', async () => {
    const lines: Buffer[] = [];
    const destination = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk), done()) });
    const h = await startSdsHarness(suite.ca, registerA, {}, createLogger({ name: 'test', level: 'debug', pretty: false, destination }));
    try {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA']);
      const r1 = await client.next();
      // "x" then pairs of UTF-16 units: the 512-unit limit falls between the halves of an emoji; "é" and "€" (two and
      // three UTF-8 bytes) around it.
      const message = `x${'\u{1F512}'.repeat(300)}é€${'\u{1F512}'.repeat(300)}`;
      client.nack(r1, ['default', 'ROOTCA'], '', message);
      client.ack(r1, ['default', 'ROOTCA', APP_A]);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ROOTCA', 'default', APP_A].sort(), 'the stream is still served after the NACK');
      const line = lines.find((l) => l.includes('NACK'));
      assert.ok(line !== undefined, 'the NACK log line');
      assert.ok(isUtf8(line), 'the log line is valid UTF-8');
      const detail = (JSON.parse(line.toString('utf8')) as Record<string, unknown>)['detail'] as string;
      assert.equal(Buffer.from(detail).toString('utf8'), detail, 'no half of a character at the cut (it would come back as U+FFFD)');
      assert.ok(message.startsWith(detail) && detail.length === 511, `cut to ${detail.length} units`);
      client.cancel();
    } finally {
      await h.close();
    }
  });

  it('Envoy sending the NACK of one response again costs no second log line', async () => {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const h = await startSdsHarness(suite.ca, (c) => c.addEntry(SELECTOR_A, APP_A), {}, createLogger({ name: 'test', level: 'debug', pretty: false, destination }));
    try {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA']);
      const r1 = await client.next();
      for (let i = 0; i < 5; i++) client.nack(r1, ['default', 'ROOTCA'], '', 'Failed to load certificate chain from <inline>');
      // A request after them that is answered (a name added): the NACKs before it were all read.
      client.ack(r1, ['default', 'ROOTCA', APP_A]);
      await client.next();
      assert.equal(lines.filter((l) => l.includes('NACK')).length, 1);
      client.cancel();
    } finally {
      await h.close();
    }
  });

  it('a caller whose streams end refused in a loop (an empty resource name) costs one log line a minute, not one per stream', async () => {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const h = await startSdsHarness(suite.ca, registerA, {}, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    try {
      for (let i = 0; i < 20; i++) {
        const refused = new SotwClient(h.client, as(SELECTOR_A));
        refused.subscribe(['']);
        assert.equal((await refused.status).code, status.INVALID_ARGUMENT);
      }
      assert.equal(lines.length, 1, lines.join(''));
      assert.match(lines[0]!, /"code":"invalid_argument".*empty name/);
    } finally {
      await h.close();
    }
  });

  it('a caller retrying a refused call in a loop costs one log line a minute, not one per call', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const h = await startSdsHarness(suite.ca, registerA, {}, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    try {
      for (let i = 0; i < 20; i++) {
        const refused = new SotwClient(h.client, as(UNREGISTERED));
        refused.subscribe(['default']);
        assert.equal((await refused.status).code, status.PERMISSION_DENIED);
      }
      assert.equal(h.service.stats().deniedCalls, 20, 'every refusal is counted');
      assert.equal(lines.filter((l) => l.includes('SDS call refused')).length, 1);
    } finally {
      await h.close();
    }
  });
});
