/**
 * A damaged agent-svid.json (a disk fault or an edit: the agent writes it atomically) with a join token to attest
 * again with: the agent sets the file aside and starts as one whose identity file is missing, serving the SVIDs its
 * stored state holds while the server is down, and attests again once it is back, as SPIRE's agent attests again
 * when its SVID file cannot be read. Without a token it stops, saying what to do; so it does, leaving the file where it
 * is, when it could not attest again for want of a trust bundle or when the file cannot be moved. Real server and
 * agent processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { startCluster, startServerProcess, type AgentProcess, type Cluster } from '../support/cluster.js';
import { teardown } from '../support/teardown.js';

const uid = process.getuid!();
const DAMAGED = '{"format":1,"svid_chain":["damaged"]}';

/** A cluster whose agent attested once and stopped, then had its agent-svid.json damaged: the file's path. */
async function agentWithDamagedIdentity(c: Cluster): Promise<{ dataDir: string; identityPath: string }> {
  await c.createEntry({ spiffeId: 'spiffe://example.org/kept', selectors: [`unix:uid:${uid}`] });
  const first = await c.startAgent({ joinToken: await c.token() });
  assert.deepEqual(await first.svidIds(), ['spiffe://example.org/kept']);
  await first.stop();
  const identityPath = path.join(first.dataDir, 'agent-svid.json');
  fs.writeFileSync(identityPath, DAMAGED);
  return { dataDir: first.dataDir, identityPath };
}

/** The lines the agent wrote to stderr besides its log (JSON lines, on stderr too), once it has exited. */
function stderrOf(agent: AgentProcess): Promise<string> {
  let err = '';
  agent.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => agent.child.once('close', () => resolve(err.split('\n').filter((l) => !l.startsWith('{')).join('\n'))));
}

test('a damaged agent identity file with a join token given is set aside: the agent serves its stored state while the server is down, then attests again', async () => {
  const c = await startCluster('meshid-agent-damaged-id-');
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/kept', selectors: [`unix:uid:${uid}`] });
    const first = await c.startAgent({ joinToken: await c.token() });
    assert.deepEqual(await first.svidIds(), ['spiffe://example.org/kept']);
    await first.stop();
    const identityPath = path.join(first.dataDir, 'agent-svid.json');
    fs.writeFileSync(identityPath, '{"format":1,"svid_chain":["damaged"]}');

    // Without a token: refused at start, naming the fix; the file is left as it is.
    const noToken = await c.startAgent({ name: 'no-token', dataDir: first.dataDir, wait: false });
    assert.equal(await noToken.exitCode(), 1);
    assert.match(noToken.output(), /agent-svid\.json cannot be used \(.*\): start the agent with a new join token .*--join-token-file FILE/);
    assert.ok(fs.existsSync(identityPath));

    const token = await c.token();
    const address = c.server.address();
    await c.server.stop();
    const again = await c.startAgent({ name: 'again', dataDir: first.dataDir, joinToken: token, wait: false });
    await again.waitForLog(/the stored agent identity cannot be used; the agent attests again with its configured join token/);
    await again.waitForLog(/listening on Unix socket/);
    assert.deepEqual(await again.svidIds(), ['spiffe://example.org/kept'], 'the stored state is served while the server is down');
    assert.equal(fs.existsSync(identityPath), false);
    assert.equal(fs.readFileSync(path.join(first.dataDir, 'agent-svid.json.damaged'), 'utf8'), '{"format":1,"svid_chain":["damaged"]}', 'kept for inspection');

    await startServerProcess(c, address);
    await again.waitForLog(/"msg":"attested to meshid-server with a join token"/);
    await again.waitForLog(/"msg":"in sync with meshid-server"/);
    assert.ok(fs.existsSync(identityPath), 'a new identity is saved');
    assert.deepEqual(await again.svidIds(), ['spiffe://example.org/kept']);
    await again.stop();
  } finally {
    await c.cleanup();
  }
});

test('a damaged agent identity with a join token but no trust bundle anywhere (no stored state, no --trust-bundle) stops the agent before the file is moved, saying what to pass', async () => {
  const c = await startCluster('meshid-agent-damaged-id-no-bundle-');
  try {
    const { dataDir, identityPath } = await agentWithDamagedIdentity(c);
    for (const name of fs.readdirSync(dataDir)) if (name.startsWith('state')) fs.rmSync(path.join(dataDir, name));

    const noBundle = await c.startAgent({ name: 'no-bundle', dataDir, joinToken: await c.token(), trustBundle: false, wait: false });
    const stderr = stderrOf(noBundle);
    assert.equal(await noBundle.exitCode(), 1);
    assert.match(
      await stderr,
      /^Error: FailedPrecondition: \S+agent-svid\.json cannot be used \(.+\), and the agent holds no other trust bundle to authenticate meshid-server with when it attests again \(no stored state\): pass --trust-bundle FILE \(meshid-server bundle show\) or --insecure-bootstrap\. The file is left as it is\n$/,
    );
    assert.equal(fs.readFileSync(identityPath, 'utf8'), DAMAGED, 'left where it was');
    assert.equal(fs.existsSync(`${identityPath}.damaged`), false);

    // Given the bundle, it attests again.
    const withBundle = await c.startAgent({ name: 'with-bundle', dataDir, joinToken: await c.token() });
    assert.deepEqual(await withBundle.svidIds(), ['spiffe://example.org/kept']);
    assert.equal(fs.readFileSync(`${identityPath}.damaged`, 'utf8'), DAMAGED);
    await withBundle.stop();
  } finally {
    await c.cleanup();
  }
});

// A read-only data dir is refused before the identity is read (the store cannot take its lock or fix its mode: "cannot
// use the data dir ..."); what gets that far and still refuses the move is an immutable file or a mount point on it.
test('a damaged agent identity that cannot be moved aside stops the agent naming the file, the data dir, the cause and what to do (an immutable file: root only)', async (t) => {
  const c = await startCluster('meshid-agent-damaged-id-immutable-');
  teardown(t).after(() => c.cleanup());
  const { dataDir, identityPath } = await agentWithDamagedIdentity(c);
  if (spawnSync('chattr', ['+i', identityPath]).status !== 0) return t.skip('needs chattr +i (root, a file system with the immutable flag)');
  teardown(t).after(() => void spawnSync('chattr', ['-i', identityPath]));

  const stuck = await c.startAgent({ name: 'stuck', dataDir, joinToken: await c.token(), wait: false });
  const stderr = stderrOf(stuck);
  assert.equal(await stuck.exitCode(), 1);
  const line = await stderr;
  assert.match(
    line,
    /^Error: FailedPrecondition: (\S+)\/agent-svid\.json cannot be used \(.+\) and cannot be moved aside in the data dir \1 to attest again: permission denied\. Make \1 writable by meshid-agent \(it saves its identity and state there\), or move agent-svid\.json out of it yourself, then start the agent again with its join token\n$/,
  );
  assert.ok(line.includes(dataDir), line);
  assert.equal(fs.readFileSync(identityPath, 'utf8'), DAMAGED);
});

test('a damaged agent identity with a join token, and the workload socket in use by another process, stops the agent with the file left where it was: the socket is bound before the file is moved', async (t) => {
  const c = await startCluster('meshid-agent-damaged-id-socket-busy-');
  teardown(t).after(() => c.cleanup());
  const { dataDir, identityPath } = await agentWithDamagedIdentity(c);
  const socketDir = path.join(c.dir, 'busy-socket');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  fs.chmodSync(socketDir, 0o755);
  const socketPath = path.join(socketDir, 'api.sock');
  const other = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => other.listen(socketPath, resolve));
  teardown(t).after(() => new Promise<void>((resolve) => other.close(() => resolve())));

  const busy = await c.startAgent({ name: 'busy', dataDir, socketPath, joinToken: await c.token(), wait: false });
  const stderr = stderrOf(busy);
  assert.equal(await busy.exitCode(), 1);
  assert.match(await stderr, /is in use: another process accepts connections on it/);
  assert.equal(fs.readFileSync(identityPath, 'utf8'), DAMAGED, 'left where it was');
  assert.deepEqual(fs.readdirSync(dataDir).filter((n) => n.startsWith('agent-svid.json.')), [], 'nothing set aside');
});

test('a damaged agent identity with a join token, and the health port in use by another process, stops the agent with the file left where it was', async (t) => {
  const c = await startCluster('meshid-agent-damaged-id-port-busy-');
  teardown(t).after(() => c.cleanup());
  const { dataDir, identityPath } = await agentWithDamagedIdentity(c);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  teardown(t).after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = (taken.address() as net.AddressInfo).port;
  const config = path.join(c.dir, 'busy-port.json');
  fs.writeFileSync(config, JSON.stringify({ health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: port } }));

  const busy = await c.startAgent({ name: 'busy-port', dataDir, joinToken: await c.token(), wait: false, extraArgs: ['--config', config] });
  const stderr = stderrOf(busy);
  assert.equal(await busy.exitCode(), 1);
  assert.match(await stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} .*another process is listening on that port`));
  assert.equal(fs.readFileSync(identityPath, 'utf8'), DAMAGED, 'left where it was');
  assert.deepEqual(fs.readdirSync(dataDir).filter((n) => n.startsWith('agent-svid.json.')), [], 'nothing set aside');
});
