/**
 * Signals an operator sends the running daemons: SIGHUP (a `systemctl reload`, a logrotate script) is logged and
 * ignored by meshid-agent and meshid-server alike, which keep serving; SIGTERM still stops them cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startClusterWithAgent } from '../support/cluster.js';
import { startServerProcess } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';
import { teardown } from '../support/teardown.js';

/**
 * Resolves when the captured output has `times` lines matching `pattern` (a process event), or rejects if the process
 * exits first.
 */
async function logged(output: () => string, exited: () => boolean, pattern: RegExp, times = 1): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (output().split('\n').filter((l) => pattern.test(l)).length >= times) return;
    if (exited()) throw new Error(`the process exited before logging ${pattern}:\n${output()}`);
    if (attempt > 400) throw new Error(`no log line matching ${pattern}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The last line the daemon logged. */
function lastLogLine(output: string): string {
  return output.trimEnd().split('\n').at(-1) ?? '';
}

test('SIGHUP leaves meshid-agent serving, with a warning that there is nothing to reload; SIGTERM then stops it cleanly, logging "stopped" last', async (t) => {
  const { cluster, agent } = await startClusterWithAgent('meshid-sighup-agent-', ['spiffe://example.org/app']);
  teardown(t).after(() => cluster.cleanup());
  const client = agent.client();
  teardown(t).after(() => client.close());
  await agent.waitForLog(/"X509-SVIDs issued"/);

  const exited = (): boolean => agent.child.exitCode !== null || agent.child.signalCode !== null;
  for (let times = 1; times <= 2; times++) {
    agent.child.kill('SIGHUP');
    await logged(() => agent.output(), exited, /"level":40.*meshid-agent has nothing to reload on SIGHUP/, times);
  }
  const svids = (await client.fetchX509Svid()).svids ?? [];
  assert.deepEqual(svids.map((s) => s.spiffe_id), ['spiffe://example.org/app']);

  assert.equal(await agent.stop('SIGTERM'), 0);
  assert.equal(fs.existsSync(agent.socketPath), false);
  assert.match(lastLogLine(agent.output()), /"level":30.*"msg":"meshid-agent stopped"/);
});

test('SIGHUP leaves meshid-server serving, with a warning that there is nothing to reload; SIGTERM then stops it cleanly, logging "stopped" last', async (t) => {
  const { dir, cleanup } = tempDir('meshid-sighup-server-');
  teardown(t).after(cleanup);
  const server = await startServerProcess(dir, ['--datacenter', 'east']);
  teardown(t).after(() => server.stop('SIGKILL'));

  server.child.kill('SIGHUP');
  const exited = (): boolean => server.child.exitCode !== null || server.child.signalCode !== null;
  await logged(server.output, exited, /"level":40.*meshid-server has nothing to reload on SIGHUP/);
  const token = await server.cli(['token', 'generate', '--datacenter', 'east']);
  assert.equal(token.code, 0, token.err);

  assert.equal(await server.stop('SIGTERM'), 0);
  assert.equal(fs.existsSync(server.adminSocket), false);
  assert.match(lastLogLine(server.output()), /"level":30.*"msg":"meshid-server stopped"/);
});
