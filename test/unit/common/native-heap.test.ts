import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadNativeHeap, NATIVE_HEAP_ADDON, startNativeHeapTrimming } from '../../../src/common/memory/native-heap.js';
import { silentLogger } from '../../../src/common/log.js';

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
  const trimmed = async (t: { trims: () => number }, n: number): Promise<void> => {
    for (let i = 0; t.trims() < n; i++) {
      assert.ok(i < 400, `no trim ${n} within 10 s`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
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
