import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { resolveSdsOptions } from '../../../src/agent/sds/sds-options.js';
import { SotwStream } from '../../../src/agent/sds/sotw-stream.js';
import type { NoncedResponse } from '../../../src/agent/sds/nonced-response.js';
import { emptyStats } from '../../../src/agent/sds/stats.js';
import type { StreamContext } from '../../../src/agent/sds/secret-stream.js';
import { WaitingNamesLog } from '../../../src/agent/sds/waiting-names.js';
import { FakeSdsCache, TestCa } from '../../support/fake-sds-cache.js';
import { secretsByName, type DiscoveryResponse } from '../../support/sds-client.js';

const SELECTOR = 'unix:uid:1';
const KEEP = 'spiffe://example.org/keep';
const GONE = 'spiffe://example.org/gone';

/** A grpc-js call stand-in whose writes complete only when the test says so (drainOne). */
class HeldCall extends EventEmitter {
  cancelled = false;
  readonly writes: DiscoveryResponse[] = [];
  private callbacks: Array<() => void> = [];
  write(message: unknown, callback: () => void): boolean {
    const r = message as NoncedResponse;
    this.writes.push({ ...(r.body as DiscoveryResponse), nonce: r.nonce });
    this.callbacks.push(callback);
    return true;
  }
  end(): void {}
  drainOne(): void {
    this.callbacks.shift()?.();
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const names = (r: DiscoveryResponse | undefined): string[] => [...secretsByName(r ?? {}).keys()].sort();

/**
 * A name a wildcard delivered and a later request names explicitly is resent; if its secret stopped resolving just
 * before that request was applied, the client, which still holds it from the wildcard, must be told it is gone.
 * In-process with a stubbed call and cache: the interleavings (the request applied before the cache notification's
 * pump, or while a write is in flight) cannot be forced through a real agent and socket.
 */
describe('SDS StreamSecrets: a name a wildcard delivered, named explicitly as it stops resolving (stubbed call and cache)', () => {
  let ca: TestCa;
  before(() => {
    ca = new TestCa('example.org');
  });
  after(() => ca.dispose());

  function open(): { cache: FakeSdsCache; call: HeldCall } {
    const cache = new FakeSdsCache(ca);
    cache.addEntry(SELECTOR, KEEP);
    cache.addEntry(SELECTOR, GONE);
    const call = new HeldCall();
    const ctx: StreamContext = {
      cache,
      selectors: [{ type: 'unix', value: 'uid:1' }],
      options: resolveSdsOptions(),
      log: silentLogger(),
      stats: emptyStats(),
      clock: new FakeClock(Date.now() - 3600_000),
      signingWaitMs: 5_000,
      deadline: Infinity,
      onClose: () => {},
      refused: () => {},
      waiting: new WaitingNamesLog(new FakeClock()).forStream(silentLogger(), { uid: 1, selectors: [] }),
    };
    new SotwStream(call, ctx).start();
    call.emit('data', { node: { id: 'n' }, resource_names: [] });
    assert.ok(names(call.writes[0]).includes(GONE), 'the legacy wildcard delivered it');
    return { cache, call };
  }

  for (const requested of [['*', GONE], [GONE]]) {
    it(`a request naming it ${JSON.stringify(requested)} in the turn its entry goes gets a response without it`, async () => {
      const { cache, call } = open();
      call.drainOne();
      // The entry goes; the stream's pump for it is scheduled for the check phase, and the request comes first.
      cache.removeEntry(GONE);
      call.emit('data', { resource_names: requested, response_nonce: call.writes[0]!.nonce, version_info: call.writes[0]!.version_info });
      await turn();
      await turn();
      const last = call.writes.at(-1)!;
      assert.ok(call.writes.length >= 2, 'the client, which holds the secret from the wildcard, heard nothing');
      assert.ok(!names(last).includes(GONE), `the last response still carries ${GONE}`);
    });
  }

  it('the same while the wildcard response is still being written: the response after it leaves the secret out', async () => {
    const { cache, call } = open();
    cache.removeEntry(GONE);
    await turn();
    call.emit('data', { resource_names: ['*', GONE], response_nonce: call.writes[0]!.nonce, version_info: call.writes[0]!.version_info });
    call.drainOne();
    await turn();
    assert.equal(call.writes.length, 2, 'one response after the one in flight');
    assert.ok(!names(call.writes[1]).includes(GONE));
    assert.ok(names(call.writes[1]).includes(KEEP));
  });
});
