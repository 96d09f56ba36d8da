/**
 * meshid-agent's health check listener (config `health_checks`, SPIRE's): real agent processes and a real server,
 * probed over HTTP on loopback. What it is for: a liveness probe that no workload can starve, since it does not go
 * through the workload socket and its per-uid connection cap, and that does not fail while the server is down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { advanceUntil } from '../support/advance-until.js';
import { AGENT_MAIN, startCluster, startInProcessCluster, type AgentProcess, type Cluster } from '../support/cluster.js';
import { healthAddressFromLog, healthBody, probe } from '../support/http-probe.js';
import { watchHealth } from '../support/health-watch.js';
import { runNode } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

const uid = process.getuid!();

/** An agent config file with the health check listener on a free loopback port, plus `extra` settings. */
function configFile(cluster: Cluster, name: string, extra: Record<string, unknown> = {}, health: Record<string, unknown> = {}): string {
  const file = path.join(cluster.dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ ...extra, health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0, ...health } }));
  return file;
}

async function healthAddressOf(agent: AgentProcess): Promise<string> {
  return healthAddressFromLog(await agent.waitForLog(/"msg":"serving health checks"/));
}

/** Resolves once `check` holds; a process's progress is an external event, so it is polled with a generous bound. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await check()); i++) {
    if (i > 300) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * An HTTP/2 connection to the agent socket, as a workload's gRPC client holds one: true once the agent's own
 * SETTINGS arrive (accepted and handed to gRPC), false when the agent closes it first (refused at accept).
 */
function holdConnection(socketPath: string, held: http2.ClientHttp2Session[]): Promise<boolean> {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined);
  return new Promise((resolve) => {
    session.once('remoteSettings', () => {
      held.push(session);
      resolve(true);
    });
    session.once('close', () => resolve(false));
  });
}

test('live and ready answer 200 with a JSON body once the agent has synced, and go on answering 200 while the server is down', async (t) => {
  const cluster = await startCluster('meshid-agent-health-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${uid}`] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--config', configFile(cluster, 'agent')] });
  const address = await healthAddressOf(agent);
  assert.match(address, /^127\.0\.0\.1:\d+$/);

  const live = await probe(address, '/live');
  assert.equal(live.status, 200);
  assert.equal(live.headers['content-type'], 'application/json');
  assert.deepEqual(healthBody(live, 'agent'), { workload_socket: agent.socketPath });
  // Ready comes with the sync; the entry's SVID may be signed a moment after it.
  await until('the agent is ready and serves its SVID', async () => {
    const r = await probe(address, '/ready');
    return r.status === 200 && healthBody(r, 'agent')['svids'] === 1;
  });
  const ready = healthBody(await probe(address, '/ready'), 'agent');
  assert.equal(ready['state'], 'synced');
  assert.equal(ready['svids'], 1);
  assert.ok(Date.parse(String(ready['agent_svid_expires_at'])) > Date.now());
  assert.equal(ready['reason'], undefined);

  // A liveness probe failing now would have the orchestrator restart an agent that serves its cache.
  await cluster.server.stop();
  await agent.waitForLog(/lost the Sync stream|cannot reach meshid-server|disconnected/);
  const liveWithoutServer = await probe(address, '/live');
  assert.equal(liveWithoutServer.status, 200, liveWithoutServer.body);
  const readyWithoutServer = await probe(address, '/ready');
  assert.equal(readyWithoutServer.status, 200, readyWithoutServer.body);
  assert.notEqual(healthBody(readyWithoutServer, 'agent')['state'], 'synced');
});

test('an agent restarted while meshid-server is down serves its restored cache: grpc.health.v1 SERVING (`meshid-agent healthcheck` exits 0) and ready 200, not synced', { timeout: 60_000 }, async (t) => {
  const cluster = await startCluster('meshid-agent-health-restart-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${uid}`] });
  const first = await cluster.startAgent({ joinToken: await cluster.token() });
  // Saved with its SVID at the stop: the next start has it to serve.
  assert.deepEqual(await first.svidIds(), ['spiffe://example.org/web']);
  await cluster.server.stop();
  assert.equal(await first.stop(), 0);

  // As SPIRE's agent: healthy while it serves from its cache, the server unreachable.
  const again = await cluster.startAgent({ name: 'again', dataDir: first.dataDir, extraArgs: ['--config', configFile(cluster, 'again')] });
  const cli = await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', again.socketPath, '--timeout', '5s']);
  assert.equal(cli.code, 0, cli.err);
  const watch = watchHealth(`unix://${again.socketPath}`);
  teardown(t).after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  const ready = await probe(await healthAddressOf(again), '/ready');
  assert.equal(ready.status, 200, ready.body);
  assert.notEqual(healthBody(ready, 'agent')['state'], 'synced');
  assert.equal(healthBody(ready, 'agent')['svids'], 1);
});

test('a uid holding all its workload-socket connections: `meshid-agent healthcheck` over the socket is refused, the HTTP probes still answer 200', async (t) => {
  const cluster = await startCluster('meshid-agent-health-cap-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${uid}`] });
  const cap = 4;
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--config', configFile(cluster, 'agent', { max_connections_per_uid: cap })] });
  const address = await healthAddressOf(agent);
  await until('the agent is ready', async () => (await probe(address, '/ready')).status === 200);

  // This process is of the uid the CLI runs as (root, as an orchestrator's exec probe usually is), like a workload
  // of that uid that opened all it may. A connection refused while the start-up check's own was still counted is
  // simply opened again.
  const held: http2.ClientHttp2Session[] = [];
  teardown(t).after(() => held.forEach((s) => s.destroy()));
  await until(`this uid holds ${cap} connections`, async () => (await holdConnection(agent.socketPath, held), held.length === cap));
  assert.equal(await holdConnection(agent.socketPath, held), false, 'one more is closed at accept');

  const overSocket = await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', agent.socketPath, '--timeout', '5s']);
  assert.equal(overSocket.code, 1, overSocket.out);
  assert.match(overSocket.err, /refusing a uid that holds max_connections_per_uid connections already.*; a probe that must not share the workload socket's per-uid limits can ask the agent's health_checks listener instead \(README\)/);

  const live = await probe(address, '/live');
  assert.equal(live.status, 200, live.body);
  assert.equal((await probe(address, '/ready')).status, 200);
  assert.equal(held.length, cap, 'the probes took none of the uid\'s connections');
});

test('ready is 500 with the reason before the first attestation (server unreachable) while live is 200; and once the agent is banned, ready is 500 and grpc.health.v1 turns NOT_SERVING (Watch pushed, `meshid-agent healthcheck` fails)', { timeout: 60_000 }, async (t) => {
  const cluster = await startCluster('meshid-agent-health-unready-');
  teardown(t).after(() => cluster.cleanup());
  // A port nothing listens on: the agent retries its first attestation and serves nothing meanwhile.
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const nowhere = `127.0.0.1:${(closed.address() as net.AddressInfo).port}`;
  await new Promise((resolve) => closed.close(resolve));
  const waiting = await cluster.startAgent({ name: 'waiting', joinToken: await cluster.token(), serverAddress: nowhere, wait: false, extraArgs: ['--config', configFile(cluster, 'waiting')] });
  const waitingAddress = await healthAddressOf(waiting);
  const notYet = await probe(waitingAddress, '/ready');
  assert.equal(notYet.status, 500);
  const details = healthBody(notYet, 'agent');
  assert.match(String(details['reason']), /^the agent has no SVIDs to serve yet: it has not attested and synced with meshid-server/);
  assert.equal(details['svids'], 0);
  assert.equal((await probe(waitingAddress, '/live')).status, 200, 'no restart for a server it cannot reach');

  const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--config', configFile(cluster, 'agent')] });
  const address = await healthAddressOf(agent);
  await until('the agent is ready', async () => (await probe(address, '/ready')).status === 200);
  const id = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
  const watch = watchHealth(`unix://${agent.socketPath}`, 'SpiffeWorkloadAPI');
  teardown(t).after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  await cluster.admin.call('Agents', 'BanAgent', { spiffe_id: id });
  await agent.waitForLog(/an operator banned this agent/);
  const banned = await probe(address, '/ready');
  assert.equal(banned.status, 500);
  assert.match(String(healthBody(banned, 'agent')['reason']), /^meshid-server banned this agent/);
  assert.equal((await probe(address, '/live')).status, 200);
  // The gRPC health on the socket agrees: an agent that withdrew everything for good does not serve (SPIRE's exits).
  assert.deepEqual(await watch.received(2), ['SERVING', 'NOT_SERVING'], 'the Watch stream is told of the change');
  const cli = await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', agent.socketPath, '--timeout', '5s']);
  assert.equal(cli.code, 1, cli.out);
  assert.match(cli.err, /agent is not healthy: status NOT_SERVING/);
});

test('on stop, grpc.health.v1 Watch streams on the workload socket are told NOT_SERVING, then end UNAVAILABLE', { timeout: 60_000 }, async (t) => {
  const cluster = await startCluster('meshid-agent-health-watch-stop-');
  teardown(t).after(() => cluster.cleanup());
  const agent = await agentWithHealthListener(cluster, 'watched');
  const socketPath = path.join(cluster.dir, 'watched.sock');
  await until('the agent is ready', async () => (await probe(agent.healthAddress()!, '/ready')).status === 200);
  const watch = watchHealth(`unix://${socketPath}`);
  teardown(t).after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  await agent.stop();
  assert.deepEqual(await watch.received(2), ['SERVING', 'NOT_SERVING']);
  const end = await watch.ended;
  assert.equal(end.code, 14, end.details);
  assert.match(end.details, /meshid-agent is shutting down/);
});

test('HEAD answers like GET without a body; other paths are 404, other methods 405, a request with a body 413', async (t) => {
  const cluster = await startCluster('meshid-agent-health-http-');
  teardown(t).after(() => cluster.cleanup());
  const agent = await cluster.startAgent({
    joinToken: await cluster.token(),
    extraArgs: ['--config', configFile(cluster, 'agent', {}, { live_path: '/healthz/live', ready_path: '/healthz/ready' })],
  });
  const address = await healthAddressOf(agent);
  const head = await probe(address, '/healthz/live', 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.ok(Number(head.headers['content-length']) > 0);
  assert.equal((await probe(address, '/healthz/live?verbose=1')).status, 200, 'a query string does not change the path');
  assert.equal((await probe(address, '/live')).status, 404, 'the default paths are not served when others are configured');
  assert.equal((await probe(address, '/')).status, 404);
  const post = await probe(address, '/healthz/ready', 'POST');
  assert.equal(post.status, 405);
  assert.equal(post.headers['allow'], 'GET, HEAD');
  const withBody = await new Promise<number>((resolve, reject) => {
    const [host, port] = address.split(':');
    const socket = net.connect(Number(port), host!, () => socket.end('GET /healthz/live HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc'));
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1])));
    socket.on('error', reject);
  });
  assert.equal(withBody, 413);
});

test('a health port already in use stops the start with the setting named, before any join token is spent; SIGTERM closes the listener', async (t) => {
  const cluster = await startCluster('meshid-agent-health-port-');
  teardown(t).after(() => cluster.cleanup());
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  teardown(t).after(() => new Promise((resolve) => taken.close(resolve)));
  const port = (taken.address() as net.AddressInfo).port;
  const token = await cluster.token();
  const refused = await cluster.startAgent({ name: 'refused', joinToken: token, wait: false, extraArgs: ['--config', configFile(cluster, 'refused', {}, { bind_port: String(port) })] });
  assert.equal(await refused.exitCode(), 1);
  assert.match(
    refused.output(),
    new RegExp(`^Error: FailedPrecondition: cannot listen on 127\\.0\\.0\\.1:${port} \\(health_checks\\.bind_address, health_checks\\.bind_port\\): another process is listening on that port; stop it or choose another port$`, 'm'),
  );
  assert.equal(fs.existsSync(refused.socketPath), false, 'the workload socket it had opened is gone');

  // The token is still unused: the same one attests the agent once the port is free.
  const agent = await cluster.startAgent({ joinToken: token, extraArgs: ['--config', configFile(cluster, 'agent')] });
  const address = await healthAddressOf(agent);
  assert.equal((await probe(address, '/live')).status, 200);
  assert.equal(await agent.stop('SIGTERM'), 0);
  await assert.rejects(probe(address, '/live'), /ECONNREFUSED/);
});

/** An in-process agent of `cluster` named `name` (socket and data in the cluster's dir) with its health listener on a free loopback port. */
async function agentWithHealthListener(cluster: Cluster, name: string, socketPath = path.join(cluster.dir, `${name}.sock`)) {
  return cluster.startInProcessAgent({
    join_token: await cluster.token(),
    socket_path: socketPath,
    data_dir: path.join(cluster.dir, `${name}-data`),
    health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 },
  });
}

test('live is 500 once the workload socket file is removed (a restart makes it again), and stop() closes the listener', async (t) => {
  const cluster = await startCluster('meshid-agent-health-socket-');
  teardown(t).after(() => cluster.cleanup());
  const socketDir = path.join(cluster.dir, 'in-process-socket');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  const socketPath = path.join(socketDir, 'api.sock');
  const agent = await agentWithHealthListener(cluster, 'in-process', socketPath);
  const address = agent.healthAddress()!;
  assert.equal((await probe(address, '/live')).status, 200);
  fs.rmSync(socketPath);
  const gone = await probe(address, '/live');
  assert.equal(gone.status, 500);
  assert.equal(healthBody(gone, 'agent')['reason'], `the workload socket ${socketPath} is gone (removed by another process): workloads cannot connect until the agent restarts and makes it again`);
  await agent.stop();
  await assert.rejects(probe(address, '/live'), /ECONNREFUSED/);
});

/** An HTTP/1.1 keep-alive connection to `address` that has had one answer to GET `path` and stays open. */
function keptAliveConnection(address: string, path: string): Promise<net.Socket> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), host!, () => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
    socket.once('data', () => resolve(socket));
    socket.once('error', reject);
  });
}

test('a client holding 64 keep-alive connections (the cap) does not shut the probes out: a new connection closes the oldest', async (t) => {
  const cluster = await startCluster('meshid-agent-health-held-');
  teardown(t).after(() => cluster.cleanup());
  const agent = await agentWithHealthListener(cluster, 'held');
  const address = agent.healthAddress()!;
  const held: net.Socket[] = [];
  teardown(t).after(() => held.forEach((s) => s.destroy()));
  // As any pod that reaches bind_address "0.0.0.0" could: each connection answered once and kept alive, so it is
  // neither idle nor slow, and a GET every few seconds would keep it open for good.
  for (let i = 0; i < 64; i++) held.push(await keptAliveConnection(address, '/live'));
  const oldestClosed = new Promise((resolve) => held[0]!.once('close', resolve));

  const live = await probe(address, '/live');
  assert.equal(live.status, 200, 'the kubelet\'s probe is answered, not reset');
  await oldestClosed;
  assert.equal(held.filter((s) => !s.destroyed && s.readyState === 'open').length, 63, 'only the oldest was closed for it');
});

test('a request with a body, on any path, is answered 413 and its connection closed unread: no 100 Continue, no body drained', async (t) => {
  const cluster = await startCluster('meshid-agent-health-body-');
  teardown(t).after(() => cluster.cleanup());
  const agent = await agentWithHealthListener(cluster, 'body');
  const [host, port] = agent.healthAddress()!.split(':');
  /** Everything the listener sends for `head`, until it closes the connection (this side never ends its request). */
  const answer = (head: string): Promise<string> =>
    new Promise((resolve, reject) => {
      let text = '';
      const socket = net.connect(Number(port), host!, () => socket.write(head));
      socket.on('data', (d: Buffer) => {
        text += d.toString();
        // A body on its way, as a client that got 100 Continue (or none asked) sends it: 1 KiB chunks, never ending.
        if (!socket.destroyed) socket.write(`400\r\n${'a'.repeat(1024)}\r\n`);
      });
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
  const expecting = await answer('POST /no-such-path HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.match(expecting, /^HTTP\/1\.1 413 /, 'not 100 Continue, which invites the body, nor 404 with the body drained');
  assert.match(expecting, /\r\nConnection: close\r\n/i);
  const posting = await answer('POST /live HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n');
  assert.match(posting, /^HTTP\/1\.1 413 /, 'not 405 with a gigabyte drained');
});

test('ready turns 500 once every cached SVID has expired with the server unreachable, while the agent SVID is still valid; live stays 200', { timeout: 120_000 }, async (t) => {
  // In-process server and agent on one FakeClock, an hour behind real time: TLS judges the certificates by real time.
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-agent-health-expired-svids-');
  teardown(t).after(() => cluster.cleanup());
  // SVIDs of ten minutes; the agent SVID lasts the default hour.
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${uid}`], x509SvidTtl: 600 });
  const agent = await cluster.startInProcessAgent(
    {
      join_token: await cluster.token(),
      socket_path: path.join(cluster.dir, 'agent.sock'),
      data_dir: path.join(cluster.dir, 'agent-data'),
      health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 },
    },
    { clock },
  );
  const address = agent.healthAddress()!;
  await until('the agent serves its SVID', async () => agent.status().svids === 1 && (await probe(address, '/ready')).status === 200);

  const stopServer = cluster.server.stop.bind(cluster.server);
  await stopServer();
  (cluster.server as { stop(): Promise<void> }).stop = async () => undefined;
  await advanceUntil(clock, () => agent.status().state === 'disconnected');
  clock.advance(11 * 60_000);
  await until('the expired SVID has left the cache', async () => agent.status().svids === 0);
  assert.ok(agent.status().agentSvidExpiresAt! > clock.now(), 'the agent SVID is still valid');
  const ready = await probe(address, '/ready');
  assert.equal(ready.status, 500, ready.body);
  assert.match(String(healthBody(ready, 'agent')['reason']), /^every SVID the agent held has expired and meshid-server could not be reached to renew them/);
  assert.equal((await probe(address, '/live')).status, 200, 'a restart would only retry the same server');
});
