import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { AGENT_MAIN } from '../../support/cluster.js';
import { SERVER_MAIN } from '../../support/server-process.js';
import { TestCa } from '../../support/fake-workload-cache.js';
import { APP_A, SELECTOR_A, startWorkloadHarness, TD, type WorkloadHarness } from '../workload/workload-harness.js';

let ca: TestCa;
let h: WorkloadHarness;

before(async () => {
  ca = new TestCa(TD);
  h = await startWorkloadHarness(ca, (cache) => cache.addEntry(SELECTOR_A, APP_A));
});
after(async () => {
  await h.close();
  ca.dispose();
});

/**
 * Runs the meshid-agent binary with its stdout a pipe whose reading end is closed at once, as `| head -1` closes it
 * after one line: every write the command makes fails with EPIPE. A command still running after 20 s is killed
 * (and so fails the assertions) rather than left behind.
 */
function runWithClosedStdout(args: string[], main = AGENT_MAIN): Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    const bound = setTimeout(() => child.kill('SIGKILL'), 20_000);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(bound);
      resolve({ code, signal, err });
    });
  });
}

describe('meshid-agent with a reader that goes away (EPIPE on stdout; attestation and cache stubbed: workload harness)', () => {
  test('api fetch x509 | head -1: exits 0 with nothing on stderr, no stack trace', async () => {
    const r = await runWithClosedStdout(['api', 'fetch', 'x509', '--socket-path', h.socketPath]);
    assert.deepEqual(r, { code: 0, signal: null, err: '' });
  });

  test('api watch | head -1: the watch ends (exit 0) instead of crashing or running on', async () => {
    const r = await runWithClosedStdout(['api', 'watch', '--socket-path', h.socketPath]);
    assert.deepEqual(r, { code: 0, signal: null, err: '' });
  });
});

test('meshid-server --help | head -1: exits 0 with nothing on stderr, as the agent does', async () => {
  const r = await runWithClosedStdout(['--help'], SERVER_MAIN);
  assert.deepEqual(r, { code: 0, signal: null, err: '' });
});

test('a command that fails after its reader went away still exits non-zero (set -o pipefail sees it)', async () => {
  const output = new URL('../../../src/common/cli/output.js', import.meta.url).href;
  // Writes, loses its reader, then fails a moment later, as entry create --data does after printing what it created.
  const script = `import { exitOnBrokenPipe } from '${output}';
exitOnBrokenPipe(process.stdout);
process.stdout.write('created\\n'.repeat(100000));
await new Promise((r) => setTimeout(r, 200));
process.exitCode = 1;`;
  const r = await new Promise<{ code: number | null; err: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, err }));
  });
  assert.deepEqual(r, { code: 1, err: '' });
});
