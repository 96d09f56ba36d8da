import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadNativeHeap, NATIVE_HEAP_ADDON, QUIET_COLLECT_MS, startNativeHeapTrimming, YOUNG_GENERATION_KEPT_BYTES, type NativeHeap } from '../../../src/common/memory/native-heap.js';
import { silentLogger } from '../../../src/common/log.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { FakeClock } from '../../../src/common/clock.js';
import { fullGc } from '../../../src/common/memory/full-gc.js';

/** Polls `done` every 25 ms, for at most 10 s: a trim follows V8's GC callbacks on a system timer no fake clock drives. */
async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; !done(); i++) {
    assert.ok(i < 400, `${what} within 10 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A trimmer whose quiet wait is on a fake clock, counting its trims and its own GCs; `idle` answers its idle check. */
function countingTrimmer(gc: () => void, idle: () => boolean): { clock: FakeClock; counts: { collects: number; trims: number }; stop: () => void } {
  const clock = new FakeClock(0);
  const counts = { collects: 0, trims: 0 };
  const fake = { trim: () => (counts.trims++, true), setMmapThreshold: () => true };
  const stop = startNativeHeapTrimming(silentLogger(), { heap: fake, delayMs: 20, clock, collect: () => (counts.collects++, gc()), idle: () => idle });
  return { clock, counts, stop };
}

test('the native heap addon is built and refuses a nonsense mmap threshold', () => {
  const heap = loadNativeHeap();
  assert.ok(heap, `${NATIVE_HEAP_ADDON} must load on Linux`);
  assert.throws(() => heap.setMmapThreshold(-1), /byte count/);
  assert.throws(() => (heap.setMmapThreshold as (x: unknown) => boolean)('big'), /byte count/);
  assert.equal(typeof heap.trim(), 'boolean');
});

test('trim() returns freed heap pages that sit below live allocations to the kernel', async () => {
  // A child, so this process's heap does not blur the figures: 200 MB of 2 KB malloc chunks, every 50th kept, so
  // the heap cannot shrink from its top; RSS must fall by most of the freed memory only when trim() is called.
  const script = `
    const heap = require(${JSON.stringify(NATIVE_HEAP_ADDON)});
    const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    let all = [];
    for (let i = 0; i < 100000; i++) all.push(Buffer.allocUnsafeSlow(2048).fill(1));
    const kept = all.filter((_, i) => i % 50 === 0);
    all = null;
    global.gc(); global.gc();
    setTimeout(() => {
      const before = rss();
      heap.trim();
      process.stdout.write(JSON.stringify({ before, after: rss(), kept: kept.length }));
    }, 200);`;
  const child = spawn(process.execPath, ['--expose-gc', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.once('exit', resolve));
  const { before, after } = JSON.parse(out) as { before: number; after: number };
  assert.ok(before - after > 100, `RSS went from ${before.toFixed(0)} MB to ${after.toFixed(0)} MB; expected > 100 MB released`);
});

test('collectAllGarbage() is a memory-reducing GC: it shrinks a young generation grown by a burst', async () => {
  // A child, so that its heap is this script's alone. Objects that survive scavenges grow the semi-spaces (V8 doubles
  // them up to 16 MB each); a plain gc() after a quiet spell shrinks them back in some runs and not in others
  // (bench/HISTORY.md, the forty-fourth session), V8's memory-reducing GC always.
  const script = `
    const heap = require(${JSON.stringify(NATIVE_HEAP_ADDON)});
    const young = () => require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    let keep = [];
    for (let i = 0; i < 3e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 200000) keep = []; }
    setTimeout(() => {
      const before = young();
      const collected = heap.collectAllGarbage();
      process.stdout.write(JSON.stringify({ before, after: young(), collected, kept: keep.length }));
    }, 200);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.once('exit', resolve));
  const { before, after, collected } = JSON.parse(out) as { before: number; after: number; collected: boolean };
  assert.equal(collected, true);
  assert.ok(before >= 8 * 1024 * 1024, `the young generation grew to ${before} bytes; the test needs it grown`);
  assert.ok(after <= before / 4, `young generation ${before} -> ${after} bytes; expected it shrunk`);
});

test('startNativeHeapTrimming trims once shortly after a major GC, and not after stop()', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // The trim delay is a system timer (V8's weak callbacks run in later ticks), not time logic on a clock: no fixed
  // sleep decides here. A second trimmer with the same delay, started later, is the yardstick: once it has trimmed
  // for a GC, the one under test has seen that GC and its delay too.
  const trimmer = (): { calls: string[]; trims: () => number; stop: () => void } => {
    const calls: string[] = [];
    const fake = { trim: () => (calls.push('trim'), true), setMmapThreshold: (b: number) => (calls.push(`mmap ${b}`), true) };
    const stop = startNativeHeapTrimming(silentLogger(), { heap: fake, delayMs: 20 });
    return { calls, trims: () => calls.filter((c) => c === 'trim').length, stop };
  };
  const trimmed = (t: { trims: () => number }, n: number): Promise<void> => until(`trim ${n}`, () => t.trims() >= n);
  const a = trimmer();
  assert.deepEqual(a.calls, ['mmap 131072']);
  gc();
  gc();
  await trimmed(a, 1);

  const yardstick = trimmer();
  gc();
  await trimmed(yardstick, 1);
  await trimmed(a, 2);
  assert.deepEqual(a.calls, ['mmap 131072', 'trim', 'trim'], 'two major GCs in a row made one trim, the next GC another');

  a.stop();
  gc();
  await trimmed(yardstick, 2);
  yardstick.stop();
  assert.deepEqual(a.calls, ['mmap 131072', 'trim', 'trim'], 'nothing after stop()');
});

test('a major GC followed by QUIET_COLLECT_MS without another gets one full GC of the process\'s own, which arms nothing', async () => {
  // bench P5: after a signing burst V8's memory reducer ran no major GC in 45 s, so the burst's native memory was
  // neither collected nor trimmed. Real GCs (the observer sees V8's own entries); the quiet wait is on a fake clock.
  const gc = fullGc();
  assert.ok(gc, 'fullGc() hands out a GC');
  // Whether the event loop was idle over the wait: decided by the test (this process is busy collecting).
  let idle = true;
  const { clock, counts, stop } = countingTrimmer(gc, () => idle);
  try {
    assert.equal(clock.pendingTimers(), 0, 'nothing is armed before a major GC');
    gc();
    // Each wait below ends on a trim of that very GC (none is pending from an earlier one), so the observer saw it.
    await until('the trim and the quiet wait after a major GC', () => counts.trims === 1 && clock.pendingTimers() === 1);
    clock.advance(QUIET_COLLECT_MS - 1);
    assert.equal(counts.collects, 0);
    clock.advance(1);
    assert.equal(counts.collects, 1, 'one full GC once the process went QUIET_COLLECT_MS without a major GC');
    const trimsBefore = counts.trims;
    await until('the trim after the process\'s own GC', () => counts.trims > trimsBefore);
    assert.equal(clock.pendingTimers(), 0, 'its own GC arms no further wait');
    clock.advance(10 * QUIET_COLLECT_MS);
    assert.equal(counts.collects, 1, 'an idle process is collected once, not every QUIET_COLLECT_MS');

    // A busy process (V8's major GCs less than QUIET_COLLECT_MS apart) gets none.
    gc();
    await until('the trim and the quiet wait after the next major GC', () => counts.trims === trimsBefore + 2 && clock.pendingTimers() === 1);
    clock.advance(QUIET_COLLECT_MS / 2);
    const trimsAt = counts.trims;
    gc();
    await until('the second major GC seen', () => counts.trims > trimsAt);
    clock.advance(QUIET_COLLECT_MS / 2);
    assert.equal(counts.collects, 1, 'the wait starts again at each major GC');
    idle = false;
    clock.advance(QUIET_COLLECT_MS / 2);
    assert.equal(counts.collects, 1, 'not while the event loop was busy');
    assert.equal(clock.pendingTimers(), 1, 'it waits again instead');
    idle = true;
    clock.advance(QUIET_COLLECT_MS);
    assert.equal(counts.collects, 2);
  } finally {
    stop();
  }
  gc();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(clock.pendingTimers(), 0, 'nothing armed after stop()');
});

test('the quiet collection adds the addon\'s memory-reducing GC only when the young generation kept its burst size', async () => {
  // bench P5's high mode: after the quiet plain gc() V8 kept the burst's 32 MB young generation in about a third of
  // the runs. Then, and only then, the addon's collectAllGarbage follows; its GCs arm nothing, as the plain one's.
  const gc = fullGc();
  assert.ok(gc, 'fullGc() hands out a GC');
  const run = async (youngBytes: number, withAddonGc = true): Promise<{ plain: number; reduced: number; logged: string[] }> => {
    const clock = new FakeClock(0);
    let plain = 0;
    let reduced = 0;
    let trims = 0;
    const fake: NativeHeap = { trim: () => (trims++, true), setMmapThreshold: () => true };
    if (withAddonGc) fake.collectAllGarbage = () => (reduced++, gc(), gc(), true);
    const { log, records } = capturingLogger('agent');
    const stop = startNativeHeapTrimming(log, {
      heap: fake,
      delayMs: 20,
      clock,
      collect: () => (plain++, gc()),
      idle: () => () => true,
      youngGeneration: () => youngBytes,
    });
    try {
      gc();
      await until('the trim and the quiet wait after a major GC', () => trims === 1 && clock.pendingTimers() === 1);
      clock.advance(QUIET_COLLECT_MS);
      await until('the trim after the quiet collection', () => trims === 2);
      assert.equal(clock.pendingTimers(), 0, `young generation ${youngBytes} bytes: the quiet collection's GCs arm no further wait`);
      clock.advance(10 * QUIET_COLLECT_MS);
      const logged = records()
        .filter((r) => r.msg.includes('memory-reducing'))
        .map((r) => `${r.level === LEVEL.debug ? 'debug' : r.level} ${String(r['youngGenerationMb'])} MB`);
      return { plain, reduced, logged };
    } finally {
      stop();
    }
  };
  // The memory-reducing GC is said at debug, with the young generation's size that called for it; nothing otherwise.
  assert.deepEqual(await run(32 * 1024 * 1024), { plain: 1, reduced: 1, logged: ['debug 32 MB'] }, 'young generation kept at 32 MB: the plain GC, then the memory-reducing one');
  assert.deepEqual(await run(YOUNG_GENERATION_KEPT_BYTES + 1), { plain: 1, reduced: 1, logged: ['debug 8 MB'] });
  assert.deepEqual(await run(YOUNG_GENERATION_KEPT_BYTES), { plain: 1, reduced: 0, logged: [] }, 'young generation shrunk: the plain GC alone');
  assert.deepEqual(await run(1024 * 1024), { plain: 1, reduced: 0, logged: [] });
  assert.deepEqual(await run(32 * 1024 * 1024, false), { plain: 1, reduced: 0, logged: [] }, 'an addon built without collectAllGarbage: the plain GC alone');
});

test('stop() while the quiet wait is armed cancels it: no collection comes after', async () => {
  const gc = fullGc();
  assert.ok(gc, 'fullGc() hands out a GC');
  const { clock, counts, stop } = countingTrimmer(gc, () => true);
  try {
    gc();
    await until('the trim and the quiet wait after a major GC', () => counts.trims === 1 && clock.pendingTimers() === 1);
  } finally {
    stop();
  }
  assert.equal(clock.pendingTimers(), 0, 'the armed wait is cancelled');
  clock.advance(10 * QUIET_COLLECT_MS);
  assert.equal(counts.collects, 0, 'a stopped process is not collected');
});

test('by default the quiet collection reads the young generation itself, and runs when the event loop was idle: an old generation of any size calls for no memory-reducing GC', async () => {
  // A child, so that its heap is this script's alone. `collect` does nothing, so the young generation is left as the
  // allocations before the wait made it: grown by a burst of short-lived objects, or small beside many MB of live ones.
  const nativeHeap = new URL('../../../src/common/memory/native-heap.js', import.meta.url).href;
  const clockModule = new URL('../../../src/common/clock.js', import.meta.url).href;
  const logModule = new URL('../../../src/common/log.js', import.meta.url).href;
  const script = `
    import v8 from 'node:v8';
    import { runInNewContext } from 'node:vm';
    import { loadNativeHeap, startNativeHeapTrimming, QUIET_COLLECT_MS } from ${JSON.stringify(nativeHeap)};
    import { FakeClock } from ${JSON.stringify(clockModule)};
    import { silentLogger } from ${JSON.stringify(logModule)};
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc');
    const space = (name) => v8.getHeapSpaceStatistics().find((s) => s.space_name === name).space_size;
    const burst = process.argv[1] === 'burst';
    let keep = [];
    const grow = () => { for (let i = 0; i < 3e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 200000) keep = []; } };
    const old = burst ? [] : Array.from({ length: 400000 }, (_, i) => ({ i, s: 'live ' + i }));
    // Promoting them grew the young generation too: V8's memory-reducing GC (the real addon's) shrinks it back.
    if (!burst) loadNativeHeap().collectAllGarbage();
    const clock = new FakeClock(0);
    let trims = 0, collects = 0, reduced = 0;
    const heap = { trim: () => (trims++, true), setMmapThreshold: () => true, collectAllGarbage: () => (reduced++, true) };
    const stop = startNativeHeapTrimming(silentLogger(), {
      heap, delayMs: 1, clock, collect: () => void collects++,
      // The burst below keeps the event loop busy on purpose; the idle check is the other case's to show.
      ...(burst ? { idle: () => () => true } : {}),
    });
    gc();
    for (let i = 0; !(trims > 0 && clock.pendingTimers() === 1); i++) {
      if (i > 400) throw new Error('no quiet wait armed within 10 s');
      await new Promise((r) => setTimeout(r, 25));
    }
    if (burst) grow();
    const young = space('new_space');
    const oldSpace = space('old_space');
    clock.advance(QUIET_COLLECT_MS);
    stop();
    process.stdout.write(JSON.stringify({ young, oldSpace, collects, reduced, kept: keep.length + old.length }));`;
  const run = async (mode: string): Promise<{ young: number; oldSpace: number; collects: number; reduced: number }> => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((resolve) => child.once('exit', resolve));
    return JSON.parse(out) as { young: number; oldSpace: number; collects: number; reduced: number };
  };
  const burst = await run('burst');
  assert.ok(burst.young > YOUNG_GENERATION_KEPT_BYTES, `the young generation grew to ${burst.young} bytes; the test needs it grown`);
  assert.deepEqual({ collects: burst.collects, reduced: burst.reduced }, { collects: 1, reduced: 1 }, 'the young generation kept its burst size: the memory-reducing GC follows');
  const live = await run('live');
  assert.ok(live.young <= YOUNG_GENERATION_KEPT_BYTES, `the young generation is ${live.young} bytes; the test needs it small`);
  assert.ok(live.oldSpace > 2 * YOUNG_GENERATION_KEPT_BYTES, `the old generation is ${live.oldSpace} bytes; the test needs it large`);
  assert.deepEqual(
    { collects: live.collects, reduced: live.reduced },
    { collects: 1, reduced: 0 },
    'a process that waited idle is collected once; its large old generation is no reason for the memory-reducing GC',
  );
});
