import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FakeClock } from '../../../src/common/clock.js';
import { permissionDenied } from '../../../src/common/errors.js';
import { IdentityStream, type StreamCall } from '../../../src/agent/workload/identity-stream.js';
import type { IdentitySnapshot, WorkloadCache } from '../../../src/agent/cache/workload-cache.js';

/** A server stream whose writes complete only when the test says so: a client that stopped reading. */
class HeldCall extends EventEmitter implements StreamCall<number> {
  cancelled = false;
  readonly written: number[] = [];
  readonly errors: unknown[] = [];
  private held: Array<() => void> = [];
  constructor() {
    super();
    this.on('error', (e) => this.errors.push(e));
  }
  write(message: number, callback: () => void): boolean {
    this.written.push(message);
    this.held.push(callback);
    return false;
  }
  end(): void {}
  release(): void {
    const held = this.held;
    this.held = [];
    for (const cb of held) cb();
  }
}

/** A cache whose snapshot content is just a counter, so each message says which state it was rendered from. */
function counterCache(): { cache: Pick<WorkloadCache, 'snapshot' | 'subscribe'>; bump: () => void; listeners: () => number; state: { value: number; entitled: boolean } } {
  const state = { value: 1, entitled: true };
  const listeners = new Set<() => void>();
  return {
    state,
    cache: {
      snapshot: () => ({ entitled: state.entitled, complete: true, svids: [], bundle: undefined, federatedBundles: [], value: state.value }) as unknown as IdentitySnapshot,
      subscribe: (_s, l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    },
    bump: () => {
      state.value++;
      for (const l of [...listeners]) l();
    },
    listeners: () => listeners.size,
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const valueOf = (s: IdentitySnapshot): number => (s as unknown as { value: number }).value;

function open(
  call: HeldCall,
  cache: Pick<WorkloadCache, 'snapshot' | 'subscribe'>,
  clock = new FakeClock(),
  render: (s: IdentitySnapshot, first: boolean) => number | undefined = valueOf,
  hooks: { refused?: (error: unknown) => void; recheck?: () => void } = {},
): { stream: IdentityStream<number>; closed: () => number } {
  let closed = 0;
  const stream = new IdentityStream<number>({
    call,
    cache,
    view: { render, same: (a, b) => a === b },
    selectors: [],
    clock,
    pendingTimeoutMs: 30_000,
    refused: hooks.refused ?? (() => undefined),
    ...(hooks.recheck !== undefined && { recheck: hooks.recheck }),
    onClose: () => closed++,
  });
  stream.start();
  return { stream, closed: () => closed };
}

test('a client that stops reading holds one message, then gets only the newest state (no backlog)', async () => {
  const call = new HeldCall();
  const c = counterCache();
  open(call, c.cache);
  assert.deepEqual(call.written, [1], 'the first message goes out at once');
  for (let i = 0; i < 50; i++) {
    c.bump();
    await tick();
  }
  assert.deepEqual(call.written, [1], 'nothing more is written while the first write is outstanding');
  call.release();
  assert.deepEqual(call.written, [1, 51], 'one message with the state at the time the write completed');
  call.release();
  await tick();
  assert.deepEqual(call.written, [1, 51], 'and nothing after it, since nothing changed');
});

test('notifications within one event-loop turn are coalesced into one render', async () => {
  const call = new HeldCall();
  const c = counterCache();
  open(call, c.cache);
  call.release();
  c.bump();
  c.bump();
  c.bump();
  await tick();
  assert.deepEqual(call.written, [1, 4]);
});

test('cancellation unsubscribes and calls onClose exactly once', async () => {
  const call = new HeldCall();
  const c = counterCache();
  const { closed } = open(call, c.cache);
  assert.equal(c.listeners(), 1);
  call.cancelled = true;
  call.emit('cancelled');
  call.emit('close');
  assert.equal(c.listeners(), 0);
  assert.equal(closed(), 1);
  c.bump();
  await tick();
  assert.deepEqual(call.written, [1], 'a closed stream writes nothing');
});

test('losing the entitlement ends the stream with PERMISSION_DENIED (code 7)', async () => {
  const call = new HeldCall();
  const c = counterCache();
  const { closed } = open(call, c.cache);
  call.release();
  c.state.entitled = false;
  c.bump();
  await tick();
  assert.equal((call.errors[0] as { code: number }).code, 7);
  assert.equal(closed(), 1);
  assert.equal(c.listeners(), 0);
});

test('a closed stream lets go of its call, so whatever still references the stream does not keep the call alive', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let call: HeldCall | undefined = new HeldCall();
  const c = counterCache();
  const { stream, closed } = open(call, c.cache);
  const callRef = new WeakRef(call);
  call.cancelled = true;
  call.emit('cancelled');
  assert.equal(closed(), 1);
  call = undefined;
  // A new macrotask: WeakRef targets are kept alive until the current job ends.
  await tick();
  gc();
  assert.equal(callRef.deref(), undefined, 'the closed stream still references its call');
  assert.equal(stream.open, false);
});

test('a first message waits for more at most the pending window from the stream\'s start: then what there is goes, and only nothing ends the stream UNAVAILABLE', () => {
  for (const [what, value] of [['an SVID to send', 1], ['nothing valid to send', 0]] as const) {
    const clock = new FakeClock();
    const call = new HeldCall();
    const c = counterCache();
    c.state.value = value;
    // Stands for the X.509 view while a signing is still waited for: a first message waits, a later one sends what there is.
    const { stream, closed } = open(call, c.cache, clock, (s, first) => (first || valueOf(s) === 0 ? undefined : valueOf(s)));
    clock.advance(29_999);
    assert.deepEqual([call.written, call.errors.length], [[], 0], `${what}: still waiting within the window`);
    clock.advance(1);
    if (value === 1) {
      assert.deepEqual(call.written, [1], 'what there is goes at the end of the window');
      assert.deepEqual([call.errors.length, closed(), stream.open], [0, 0, true], 'and the stream stays open for what comes next');
    } else {
      assert.deepEqual(call.written, []);
      assert.equal((call.errors[0] as { code: number }).code, 14, 'nothing to send: UNAVAILABLE');
      assert.equal(closed(), 1);
    }
  }
});

/** Left with nothing valid to send as of now, the stream waits out the whole 30 s pending window, then ends UNAVAILABLE. */
function assertWaitsWindowThenUnavailable(clock: FakeClock, call: HeldCall, stream: { open: boolean }, waits: string): void {
  clock.advance(29_999);
  assert.deepEqual([call.errors.length, stream.open], [0, true], waits);
  clock.advance(1);
  assert.equal((call.errors[0] as { code: number } | undefined)?.code, 14, 'nothing valid to send for the whole window: UNAVAILABLE');
}

test('a stream that has sent and is then left with nothing valid to send ends UNAVAILABLE after the pending window, as before any message', async () => {
  const clock = new FakeClock();
  const call = new HeldCall();
  const c = counterCache();
  // Stands for the X.509 view: nothing to send while the default SVID is missing (expired, or its entry's SPIFFE ID
  // changed, while the server is unreachable).
  const { stream, closed } = open(call, c.cache, clock, (s) => (valueOf(s) % 2 === 1 ? valueOf(s) : undefined));
  assert.deepEqual(call.written, [1]);
  call.release();
  c.bump();
  await tick();
  assertWaitsWindowThenUnavailable(clock, call, stream, 'within the window the stream waits');
  assert.deepEqual([closed(), stream.open, clock.pendingTimers()], [1, false, 0]);
});

test('a stream that ends with an error hands that error to `refused` (the refusal log) once, with the status it sends', async () => {
  const call = new HeldCall();
  const c = counterCache();
  const refused: unknown[] = [];
  open(call, c.cache, new FakeClock(), valueOf, { refused: (e) => refused.push(e) });
  call.release();
  c.state.entitled = false;
  c.bump();
  await tick();
  c.bump();
  await tick();
  assert.equal(refused.length, 1);
  assert.equal((refused[0] as { code: string }).code, 'permission_denied');
  assert.equal((call.errors[0] as { code: number }).code, 7);
});

test('every message but the first (rendered in the turn the caller was attested) is preceded by a recheck; a recheck that throws ends the stream with its status', async () => {
  const call = new HeldCall();
  const c = counterCache();
  let rechecks = 0;
  let refuse: Error | undefined;
  open(call, c.cache, new FakeClock(), valueOf, {
    recheck: () => {
      rechecks++;
      if (refuse !== undefined) throw refuse;
    },
  });
  assert.deepEqual(call.written, [1]);
  assert.equal(rechecks, 0, 'the first message needs no second look');
  call.release();
  c.bump();
  await tick();
  assert.deepEqual(call.written, [1, 2]);
  assert.equal(rechecks, 1);
  call.release();
  refuse = permissionDenied('the caller process is gone');
  c.bump();
  await tick();
  assert.deepEqual(call.written, [1, 2], 'nothing is pushed to a caller that failed its recheck');
  assert.equal((call.errors[0] as { code: number }).code, 7);
});

test('a stream left with nothing to send gets a whole pending window from then, not what remained of an earlier wait', async () => {
  const clock = new FakeClock();
  const call = new HeldCall();
  const c = counterCache();
  // Nothing to send at first (values 1 and 2), then a message (value 3), then nothing again (value 4).
  const { stream } = open(call, c.cache, clock, (s) => (valueOf(s) === 3 ? 3 : undefined));
  assert.deepEqual(call.written, []);
  clock.advance(5_000);
  c.bump();
  await tick();
  clock.advance(5_000);
  c.bump();
  await tick();
  assert.deepEqual(call.written, [3]);
  call.release();
  c.bump();
  await tick();
  assertWaitsWindowThenUnavailable(clock, call, stream, 'within 30 s of being left with nothing, the stream waits');
});

test('a call already cancelled when the stream starts is closed at once: no subscription, no write', () => {
  const call = new HeldCall();
  call.cancelled = true;
  const c = counterCache();
  const { stream, closed } = open(call, c.cache);
  assert.deepEqual([call.written, c.listeners(), closed(), stream.open], [[], 0, 1, false]);
});
