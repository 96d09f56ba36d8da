import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { resolveSdsOptions } from '../../../src/agent/sds/sds-options.js';
import { SotwStream } from '../../../src/agent/sds/sotw-stream.js';
import type { NoncedResponse } from '../../../src/agent/sds/nonced-response.js';
import { DeltaStream } from '../../../src/agent/sds/delta-stream.js';
import { emptyStats } from '../../../src/agent/sds/stats.js';
import type { StreamContext } from '../../../src/agent/sds/secret-stream.js';
import { WaitingNamesLog } from '../../../src/agent/sds/waiting-names.js';
import { FakeSdsCache, TestCa } from '../../support/fake-sds-cache.js';
import { dataSourceText, decodeDeltaResources, secretsByName, type DiscoveryResponse } from '../../support/sds-client.js';

const APP = 'spiffe://example.org/app';

/** A grpc-js call stand-in whose writes complete only when the test says so: a client that stopped reading. */
class StalledCall extends EventEmitter {
  cancelled = false;
  readonly writes: unknown[] = [];
  private callbacks: Array<() => void> = [];
  write(message: unknown, callback: () => void): boolean {
    this.writes.push(message);
    this.callbacks.push(callback);
    return false;
  }
  end(): void {}
  /** Lets the oldest pending write complete. */
  drainOne(): void {
    this.callbacks.shift()?.();
  }
  get pendingWrites(): number {
    return this.callbacks.length;
  }
}

/** What a StreamSecrets write puts on the wire, as the client decodes it. */
const sotwMessage = (w: unknown): DiscoveryResponse => {
  const r = w as NoncedResponse;
  return { ...(r.body as DiscoveryResponse), nonce: r.nonce };
};

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SDS streams under backpressure (stubbed: FakeSdsCache for the identity cache, StalledCall for the grpc-js call)', () => {
  let ca: TestCa;
  before(() => {
    ca = new TestCa('example.org');
  });
  after(() => ca.dispose());

  function context(cache: FakeSdsCache): StreamContext {
    return {
      cache,
      selectors: [{ type: 'unix', value: 'uid:1' }],
      options: resolveSdsOptions(),
      log: silentLogger(),
      stats: emptyStats(),
      clock: new FakeClock(),
      signingWaitMs: 30_000,
      deadline: Infinity,
      onClose: () => {},
      refused: () => {},
      waiting: new WaitingNamesLog(new FakeClock()).forStream(silentLogger(), { uid: 1, selectors: [] }),
    };
  }

  it('SotW: while a write is stuck, any number of changes fold into one pending response carrying the newest SVID', async () => {
    const cache = new FakeSdsCache(ca);
    cache.addEntry('unix:uid:1', APP);
    const call = new StalledCall();
    const ctx = context(cache);
    new SotwStream(call, ctx).start();
    call.emit('data', { node: { id: 'n' }, resource_names: ['default'] });
    assert.equal(call.writes.length, 1);

    for (let i = 0; i < 20; i++) {
      cache.rotate(APP);
      await turn();
    }
    call.emit('data', { resource_names: ['default', 'ROOTCA'], response_nonce: '1' });
    assert.equal(call.writes.length, 1, 'nothing queued behind the stuck write');
    assert.ok(ctx.stats.coalescedUpdates >= 1);

    call.drainOne();
    assert.equal(call.writes.length, 2, 'one response once the write completes');
    const latest = secretsByName(sotwMessage(call.writes[1]));
    assert.deepEqual([...latest.keys()].sort(), ['ROOTCA', 'default']);
    const leafPem = dataSourceText(latest.get('default')?.tls_certificate?.certificate_chain);
    const expected = cache.svidOf(APP).chain[0]!.toString('base64').slice(0, 60);
    assert.ok(leafPem.replace(/\n/g, '').includes(expected), 'the newest SVID, not a backlog');

    call.drainOne();
    await turn();
    assert.equal(call.writes.length, 2, 'nothing more: the state was already sent');
  });

  it('Delta: the same discipline, and the pending response holds only the net change', async () => {
    const cache = new FakeSdsCache(ca);
    cache.addEntry('unix:uid:1', APP);
    const call = new StalledCall();
    const ctx = context(cache);
    new DeltaStream(call, ctx).start();
    call.emit('data', { node: { id: 'n' }, resource_names_subscribe: ['default', 'ROOTCA'] });
    assert.equal(call.writes.length, 1);
    for (let i = 0; i < 10; i++) {
      cache.rotate(APP);
      await turn();
    }
    assert.equal(call.writes.length, 1);
    call.drainOne();
    assert.equal(call.writes.length, 2);
    const resources = decodeDeltaResources(call.writes[1] as never);
    assert.deepEqual(resources.map((r) => r.name), ['default']);
  });

  it('a stream closed by the client unsubscribes from the cache and ignores later changes', async () => {
    const cache = new FakeSdsCache(ca);
    cache.addEntry('unix:uid:1', APP);
    const call = new StalledCall();
    let closed = 0;
    const ctx = { ...context(cache), onClose: () => closed++ };
    new SotwStream(call, ctx).start();
    call.emit('data', { node: { id: 'n' }, resource_names: ['default'] });
    assert.equal(cache.listenerCount(), 1);
    call.emit('cancelled');
    call.emit('close');
    assert.equal(cache.listenerCount(), 0);
    assert.equal(closed, 1, 'onClose runs once');
    call.drainOne();
    cache.notify();
    await turn();
    assert.equal(call.writes.length, 1);
  });

  it('a closed stream lets go of its call, so whatever still references the stream does not keep the call alive', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const cache = new FakeSdsCache(ca);
    cache.addEntry('unix:uid:1', APP);
    for (const make of [(c: StalledCall) => new SotwStream(c, context(cache)), (c: StalledCall) => new DeltaStream(c, context(cache))]) {
      let call: StalledCall | undefined = new StalledCall();
      const stream = make(call);
      stream.start();
      const callRef = new WeakRef(call);
      call.cancelled = true;
      call.emit('cancelled');
      call = undefined;
      // A new macrotask: WeakRef targets are kept alive until the current job ends.
      await turn();
      gc();
      assert.equal(callRef.deref(), undefined, `the closed ${stream.constructor.name} still references its call`);
    }
  });
});
