/**
 * watchStdinEnd and the stdin side of waitForStopSignal, in child processes (a test must not take its own stdin):
 * MESHID_STOP_ON_STDIN_END=1 alone makes the end of stdin a stop, the watch keeps no process alive, and a stop or a
 * dispose ends the watch.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { STOP_ON_STDIN_END_ENV } from '../../../src/common/cli/stop-signal.js';
import { exitedAndRead } from '../../support/exited-and-read.js';

const stopSignal = new URL('../../../src/common/cli/stop-signal.js', import.meta.url).href;
const logModule = new URL('../../../src/common/log.js', import.meta.url).href;

/** The children started; any still running when the file ends (a failed test's) is killed, not left behind. */
const started = new Set<ChildProcess>();
after(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Runs `body` (an ES module body with watchStdinEnd, waitForStopSignal, silentLogger and `say` in scope) with stdin a pipe. */
function child(body: string, env: NodeJS.ProcessEnv): { said: () => string[]; stdinEnd: () => void; exited: Promise<number | null> } {
  const script = `
    import { watchStdinEnd, waitForStopSignal } from ${JSON.stringify(stopSignal)};
    import { silentLogger } from ${JSON.stringify(logModule)};
    const say = (what) => process.stdout.write(JSON.stringify(what) + '\\n');
    ${body}`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  started.add(c);
  let out = '';
  c.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = exitedAndRead(c);
  return {
    said: () => out.split('\n').filter((l) => l !== ''),
    stdinEnd: () => c.stdin.end(),
    exited,
  };
}

test('only MESHID_STOP_ON_STDIN_END=1 makes the end of stdin a stop; otherwise stdin is left alone', { timeout: 60_000 }, async () => {
  const body = `
    const onEnd = () => {};
    const stdinState = () => ({ watched: process.stdin.listeners('end').includes(onEnd), flowing: process.stdin.readableFlowing });
    const unwatch = watchStdinEnd(process.env, onEnd);
    say(stdinState());
    unwatch();
    say(stdinState());
    process.exit(0);`;
  for (const value of [undefined, '0', 'true', '']) {
    const c = child(body, { [STOP_ON_STDIN_END_ENV]: value });
    assert.equal(await c.exited, 0);
    assert.deepEqual(c.said(), [JSON.stringify({ watched: false, flowing: null }), JSON.stringify({ watched: false, flowing: null })], `${STOP_ON_STDIN_END_ENV}=${value}`);
  }
  const c = child(body, { [STOP_ON_STDIN_END_ENV]: '1' });
  assert.equal(await c.exited, 0);
  assert.deepEqual(c.said(), [JSON.stringify({ watched: true, flowing: true }), JSON.stringify({ watched: false, flowing: true })], 'watched, then unwatched');
});

test('the watch calls back when stdin ends, and keeps no process alive on its own while stdin stays open', { timeout: 60_000 }, async () => {
  const ending = child(`watchStdinEnd(process.env, () => (say('ended'), process.exit(0))); say('watching'); setInterval(() => {}, 1000);`, { [STOP_ON_STDIN_END_ENV]: '1' });
  // A timer keeps this one alive; the end of its stdin is what it waits for.
  for (let i = 0; ending.said().length === 0; i++) {
    assert.ok(i < 400, 'the child started within 10 s');
    await new Promise((r) => setTimeout(r, 25));
  }
  ending.stdinEnd();
  for (let i = 0; ending.said().length < 2; i++) {
    assert.ok(i < 400, 'the end seen within 10 s');
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.deepEqual(ending.said(), ['"watching"', '"ended"']);
  assert.equal(await ending.exited, 0);
  // Nothing else to do and stdin still open (this process holds its write end): it ends by itself, as a daemon whose
  // stop is done must, rather than wait on its stdin.
  const idle = child(`watchStdinEnd(process.env, () => say('ended')); say('watching');`, { [STOP_ON_STDIN_END_ENV]: '1' });
  assert.equal(await idle.exited, 0);
  assert.deepEqual(idle.said(), ['"watching"']);
});

test('waitForStopSignal: the end of stdin is a stop; a stop by signal, and dispose, end the watch of stdin', { timeout: 60_000 }, async () => {
  // The watch keeps no process alive (a daemon's servers do): each child keeps itself alive with a timer. Node has an
  // 'end' listener of its own on stdin, so the watch's is told by the count beyond the one before it.
  const keepAlive = `setInterval(() => {}, 1000); const base = process.stdin.listenerCount('end');`;
  const state = `({ endListeners: process.stdin.listenerCount('end') - base })`;
  const byStdin = child(`${keepAlive} const { signal } = waitForStopSignal(silentLogger(), 'test'); say(await signal); process.exit(0);`, { [STOP_ON_STDIN_END_ENV]: '1' });
  byStdin.stdinEnd();
  assert.equal(await byStdin.exited, 0);
  assert.deepEqual(byStdin.said(), ['"stdin closed"']);

  const bySignal = child(
    `${keepAlive} const { signal } = waitForStopSignal(silentLogger(), 'test'); process.kill(process.pid, 'SIGTERM'); say(await signal); say(${state}); process.exit(0);`,
    { [STOP_ON_STDIN_END_ENV]: '1' },
  );
  assert.equal(await bySignal.exited, 0);
  assert.deepEqual(bySignal.said(), ['"SIGTERM"', JSON.stringify({ endListeners: 0 })], 'stopped by SIGTERM: stdin is no longer watched');

  const disposed = child(`${keepAlive} const { dispose } = waitForStopSignal(silentLogger(), 'test'); say(${state}); dispose(); say(${state}); process.exit(0);`, {
    [STOP_ON_STDIN_END_ENV]: '1',
  });
  assert.equal(await disposed.exited, 0);
  assert.deepEqual(disposed.said(), [JSON.stringify({ endListeners: 1 }), JSON.stringify({ endListeners: 0 })]);
});
