/**
 * exitedAndRead (test/support/exited-and-read.ts): what the helpers that wait for a daemon's exit hand the test must
 * hold everything the daemon wrote, its last lines included, and a grandchild holding the daemon's pipes must not hang
 * the wait.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exitedAndRead } from '../../support/exited-and-read.js';
import { teardown } from '../../support/teardown.js';
import { until } from '../../support/until.js';

/** More than a pipe holds: the grandchild's last line comes after several reads. */
const BURST = 200_000;

test('exitedAndRead resolves once what reaches the child\'s pipes after its \'exit\' is read, which \'exit\' does not wait for', async (t) => {
  // On a loaded machine a child's last lines can reach this process after its 'exit'. To make that order certain here,
  // they come from a grandchild holding the child's stdout, which writes them only once this process has seen the
  // child's 'exit' (a SIGUSR1 sent from the 'exit' listener), then exits and so ends the pipe.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-exited-and-read-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pidFile = path.join(dir, 'grandchild.pid');
  const grandchild = `
    process.on('SIGUSR1', () => { process.stdout.write('x'.repeat(${BURST}) + '\\nlast line\\n'); process.exitCode = 0; clearInterval(keep); });
    const keep = setInterval(() => {}, 1000);
    process.send('ready');`;
  const script = `
    const g = require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify('$G')}], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    g.once('message', () => {
      require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(g.pid));
      process.stdout.write('first line\\n');
      g.disconnect();
      g.unref();
      process.exitCode = 3;
    });`.replace(JSON.stringify('$G'), JSON.stringify(grandchild));
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.once('exit', () => process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGUSR1'));
  assert.equal(await exitedAndRead(child), 3);
  assert.match(out, /^first line\n/);
  assert.match(out, /\nlast line\n$/, 'what came after \'exit\' was read');
});

test('exitedAndRead resolves with the exit code even while a grandchild holds the child\'s stdout open', async (t) => {
  // The grandchild inherits the child's stdout and outlives it, as a daemon a demo started would.
  const script = `
    const g = require('node:child_process').spawn('sleep', ['600'], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    process.stdout.write(g.pid + '\\n');
    g.unref();
    process.exitCode = 4;`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = exitedAndRead(child, 200);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  teardown(t).after(async () => {
    const pid = await until('the grandchild\'s pid', () => /^(\d+)\n/.exec(out)?.[1]);
    process.kill(Number(pid), 'SIGKILL');
  });
  assert.equal(await exited, 4);
  assert.equal(child.stdout.readableEnded, false, 'the premise: the grandchild holds the pipe open, so \'close\' has not come');
});
