/**
 * A Workload API socket path another process serves is refused at start, leaving that process alone, and the refusal
 * names the setting that chose the path, as the server's admin socket refusal names its own: the operator learns which
 * flag or config key to change without reading the source.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startCluster } from '../support/cluster.js';
import { teardown } from '../support/teardown.js';

test('an agent whose socket path another process serves stops naming --socket-path, socket_path, and leaves that socket alone', async (t) => {
  const cluster = await startCluster('meshid-agent-socket-in-use-');
  teardown(t).after(() => cluster.cleanup());
  const socketDir = path.join(cluster.dir, 'taken');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  const socketPath = path.join(socketDir, 'api.sock');
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(socketPath, resolve));
  teardown(t).after(() => new Promise((resolve) => taken.close(resolve)));

  const refused = await cluster.startAgent({ name: 'refused', joinToken: await cluster.token(), socketPath, wait: false });
  assert.equal(await refused.exitCode(), 1);
  assert.match(
    refused.output(),
    new RegExp(`FailedPrecondition: ${socketPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(--socket-path, socket_path\\) is in use: another process accepts connections on it`),
  );
  assert.ok(fs.lstatSync(socketPath).isSocket(), 'the other process keeps its socket');
});
