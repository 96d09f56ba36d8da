/**
 * An SDS stream waiting for names that resolve to nothing for its caller is logged at warn, so an operator can tell
 * why an Envoy gets no certificate: once per uid and name set a minute, at most a few name sets per uid a minute, never
 * for a name whose SVID is being signed, and at info once the names are served. Attestation is stubbed
 * (x-test-selector header); the throttle runs on a FakeClock.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { DeltaStream } from '../../../src/agent/sds/delta-stream.js';
import { resolveSdsOptions } from '../../../src/agent/sds/sds-options.js';
import type { StreamContext } from '../../../src/agent/sds/secret-stream.js';
import { SotwStream } from '../../../src/agent/sds/sotw-stream.js';
import { emptyStats } from '../../../src/agent/sds/stats.js';
import { StreamWaitingNames, WaitingNamesLog } from '../../../src/agent/sds/waiting-names.js';
import { DeltaClient, secretsByName, SotwClient } from '../../support/sds-client.js';
import { capturingLogger, LEVEL, type LogRecord } from '../../support/log-lines.js';
import { APP_A, APP_A2, as, eventually, registerA, SELECTOR_A, startSdsHarness, trustDomainsForSuite, type SdsHarness } from './sds-harness.js';
import { FakeSdsCache } from '../../support/fake-sds-cache.js';

const UNKNOWN = 'spiffe://example.org/ns/default/sa/nobody';

const waitLines = (records: LogRecord[]): LogRecord[] => records.filter((r) => /^SDS stream waits for secrets/.test(r.msg));
const servedLines = (records: LogRecord[]): LogRecord[] => records.filter((r) => /^SDS stream now gets secrets/.test(r.msg));

describe('SDS names a stream waits for are logged (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  async function withLoggedHarness(
    setup: (c: FakeSdsCache) => void,
    body: (h: SdsHarness, records: () => LogRecord[], clock: FakeClock) => Promise<void>,
  ): Promise<void> {
    const clock = new FakeClock(Date.now() - 3_600_000);
    const { log, records } = capturingLogger('agent');
    const h = await startSdsHarness(suite.ca, setup, {}, log, { clock });
    try {
      await body(h, records, clock);
    } finally {
      await h.close();
    }
  }

  /** Until the handler has looked at the caller's state once more: what it logs for a request is then written. */
  async function handled(h: SdsHarness, before: number): Promise<void> {
    await eventually(() => h.cache.snapshotCalls > before, 'the request to be handled');
  }

  it('StreamSecrets: a name nothing of the caller\'s resolves is one warn line naming it, the selectors and the node; a repeat within the minute is counted, not logged', async () => {
    await withLoggedHarness(registerA, async (h, records, clock) => {
      const first = new SotwClient(h.client, as(SELECTOR_A));
      first.subscribe([UNKNOWN, 'ROOTCA']);
      assert.deepEqual([...secretsByName(await first.next()).keys()], ['ROOTCA']);
      const lines = waitLines(records());
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.level, LEVEL.warn);
      assert.deepEqual(lines[0]!['names'], [UNKNOWN]);
      assert.deepEqual(lines[0]!['selectors'], [SELECTOR_A]);
      assert.equal(lines[0]!['rpc'], 'StreamSecrets');
      assert.equal(lines[0]!['nodeId'], 'sidecar');

      // The same Envoy reconnecting, or a second sidecar of the uid: counted.
      const second = new SotwClient(h.client, as(SELECTOR_A));
      second.subscribe([UNKNOWN, 'ROOTCA']);
      await second.next();
      assert.equal(waitLines(records()).length, 1);

      clock.advance(60_000);
      const third = new SotwClient(h.client, as(SELECTOR_A));
      third.subscribe([UNKNOWN, 'ROOTCA']);
      await third.next();
      const again = waitLines(records());
      assert.equal(again.length, 2, 'logged again after a minute');
      assert.equal(again[1]!['suppressedSinceLast'], 1);
      for (const s of [first, second, third]) s.cancel();
    });
  });

  it('no line for names that are served, nor for one whose SVID is being signed; one once its signing fails', async () => {
    await withLoggedHarness(
      (c) => {
        registerA(c);
        c.addEntry(SELECTOR_A, APP_A2, { issued: false });
      },
      async (h, records) => {
        const served = new SotwClient(h.client, as(SELECTOR_A));
        served.subscribe(['default', APP_A, 'ROOTCA', 'ALL']);
        const first = await served.next();
        // Named after the first response, which alone waits for signings: nothing to send until it is signed.
        let before = h.cache.snapshotCalls;
        served.ack(first, ['default', APP_A, 'ROOTCA', 'ALL', APP_A2]);
        await handled(h, before);
        const delta = new DeltaClient(h.client, as(SELECTOR_A));
        delta.request({ subscribe: ['default', 'ROOTCA'] });
        await delta.next();
        const signing = new SotwClient(h.client, as(SELECTOR_A));
        before = h.cache.snapshotCalls;
        signing.subscribe([APP_A2]);
        await handled(h, before);
        assert.deepEqual(waitLines(records()), []);

        before = h.cache.snapshotCalls;
        h.cache.failSigning(APP_A2);
        await handled(h, before);
        // Two streams of the caller wait for it (one named it later, one's first response waited for it): one line.
        await eventually(() => waitLines(records()).length === 1, 'the warn line');
        assert.deepEqual(waitLines(records())[0]!['names'], [APP_A2]);
        for (const s of [served, delta, signing]) s.cancel();
        assert.equal(h.service.stats().responses, 2);
      },
    );
  });

  it('DeltaSecrets: a waiting name is logged, and at info once it is served; a dropped name is forgotten, not reported served', async () => {
    await withLoggedHarness(registerA, async (h, records) => {
      const delta = new DeltaClient(h.client, as(SELECTOR_A));
      let before = h.cache.snapshotCalls;
      delta.request({ subscribe: [UNKNOWN, APP_A2] });
      await handled(h, before);
      const lines = waitLines(records());
      assert.equal(lines.length, 1);
      assert.deepEqual(lines[0]!['names'], [UNKNOWN, APP_A2]);
      assert.equal(lines[0]!['rpc'], 'DeltaSecrets');

      before = h.cache.snapshotCalls;
      delta.request({ unsubscribe: [UNKNOWN] });
      await handled(h, before);
      h.cache.addEntry(SELECTOR_A, APP_A2);
      const pushed = await delta.next();
      assert.equal(pushed.resources?.[0]?.name, APP_A2);
      const served = servedLines(records());
      assert.equal(served.length, 1);
      assert.equal(served[0]!.level, LEVEL.info);
      assert.deepEqual(served[0]!['names'], [APP_A2]);
      assert.equal(waitLines(records()).length, 1, 'nothing new waits');
      delta.cancel();
    });
  });

  it('a caller inventing name after name costs at most five warn lines a minute; the next one says how many were left out', async () => {
    await withLoggedHarness(registerA, async (h, records, clock) => {
      const streams: SotwClient[] = [];
      for (let i = 0; i < 8; i++) {
        const s = new SotwClient(h.client, as(SELECTOR_A));
        streams.push(s);
        s.subscribe([`${UNKNOWN}-${i}`, 'ROOTCA']);
        await s.next();
      }
      assert.equal(waitLines(records()).length, 5);
      clock.advance(60_000);
      const s = new SotwClient(h.client, as(SELECTOR_A));
      streams.push(s);
      s.subscribe([`${UNKNOWN}-new`, 'ROOTCA']);
      await s.next();
      const lines = waitLines(records());
      assert.equal(lines.length, 6);
      assert.equal(lines[5]!['otherNameSetsLeftOut'], 3);
      for (const stream of streams) stream.cancel();
    });
  });

  it('a stream whose names all resolve never calls into the waiting log, through rotations (stubbed call)', async () => {
    /** Counts what streams ask of it. */
    class CountingWaiting extends StreamWaitingNames {
      updates = 0;
      override update(...args: Parameters<StreamWaitingNames['update']>): void {
        this.updates++;
        super.update(...args);
      }
    }
    const cache = new FakeSdsCache(suite.ca);
    registerA(cache);
    const clock = new FakeClock();
    const log = new WaitingNamesLog(clock);
    const waiting: CountingWaiting[] = [];
    const writes: unknown[] = [];
    const open = (create: (call: EventEmitter, ctx: StreamContext) => { start(): void }, request: object): void => {
      const call = Object.assign(new EventEmitter(), {
        cancelled: false,
        write: (message: unknown, done: () => void) => (writes.push(message), done(), true),
        end: () => {},
      });
      const w = new CountingWaiting(log, silentLogger(), { uid: 1, selectors: [] }, clock);
      waiting.push(w);
      const ctx: StreamContext = {
        cache, selectors: [{ type: 'unix', value: 'uid:1001' }], options: resolveSdsOptions(), log: silentLogger(), stats: emptyStats(),
        clock, signingWaitMs: 5_000, deadline: Infinity, onClose: () => {}, refused: () => {}, waiting: w,
      };
      create(call, ctx).start();
      call.emit('data', request);
    };
    open((call, ctx) => new SotwStream(call as never, ctx), { resource_names: ['default', APP_A, 'ROOTCA', 'ALL'] });
    open((call, ctx) => new DeltaStream(call as never, ctx), { resource_names_subscribe: ['default', APP_A, 'ROOTCA', 'ALL'] });
    for (let i = 0; i < 3; i++) {
      cache.rotate(APP_A);
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(writes.length, 8, 'each stream: a first response and three rotations');
    assert.deepEqual(waiting.map((w) => w.updates), [0, 0]);
  });
});

describe('SDS waiting-names log memory', () => {
  it('the throttle keeps no copy of the names a caller sends: long name sets cost the agent a few bytes each', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const clock = new FakeClock();
    const log = new WaitingNamesLog(clock);
    // What one request may carry: 1,000 names of up to 2,048 bytes that resolve to nothing (about 2 MB).
    const nameSet = (set: number): string[] =>
      Array.from({ length: 1000 }, (_, i) => `spiffe://example.org/${'p'.repeat(1990)}/${set}-${i}`);
    const report = (set: number): void => {
      const names = nameSet(set);
      const stream = log.forStream(silentLogger(), { uid: 1001, selectors: [] });
      stream.update(names, () => false, () => true);
      // Served: the other kind of line has its own throttle keys.
      stream.update([], () => false, () => true);
    };
    report(-1);
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const before = process.memoryUsage().heapUsed;
    // Fewer sets than the throttle tracks, so none is forgotten: a caller keeps what it sent resident for good.
    for (let set = 0; set < 40; set++) report(set);
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.ok(grown < 8_000_000, `40 name sets of ~2 MB left ${Math.round(grown / 1e6)} MB resident in the waiting-names log`);
    assert.ok(log, 'the log stays referenced until the measurement');
  });
});
