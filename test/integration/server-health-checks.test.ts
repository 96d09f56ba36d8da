/**
 * meshid-server's health check listener (config `health_checks`, SPIRE's): a real in-process server probed over HTTP
 * on loopback, and `meshid-server run` as a process for a port already in use.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster } from '../support/cluster.js';
import { healthBody, probe } from '../support/http-probe.js';
import { watchHealth } from '../support/health-watch.js';
import { WATCH_RECHECK_MS } from '../../src/common/grpc/health-service.js';
import { capturingLogger } from '../support/log-lines.js';
import * as grpc from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { TLS_NAME } from '../../src/agent/client/node-client.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { opensslCa } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, runRefused, SERVER_MAIN } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

const D = 24 * 3_600_000;
const HEALTH = { listener_enabled: true, bind_address: '127.0.0.1', bind_port: 0 };

test('live and ready answer 200 with a JSON body (the agent API address, each datacenter\'s intermediate); stop() closes the listener', async (t) => {
  // Behind real time: OpenSSL judges the certificates by it.
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-server-health-', { health_checks: HEALTH });
  let cleaned = false;
  teardown(t).after(() => (cleaned ? undefined : cluster.cleanup()));
  const address = cluster.meshidServer.healthAddress()!;
  assert.match(address, /^127\.0\.0\.1:\d+$/);

  const live = await probe(address, '/live');
  assert.equal(live.status, 200);
  assert.equal(live.headers['content-type'], 'application/json');
  assert.deepEqual(healthBody(live, 'server'), {});
  const ready = await probe(address, '/ready');
  assert.equal(ready.status, 200, ready.body);
  const details = healthBody(ready, 'server');
  assert.equal(details['agent_api'], cluster.server.address());
  const east = (details['intermediates_expire_at'] as Record<string, string>)['east'];
  assert.equal(Date.parse(east!), cluster.meshidServer.ca.activeIntermediate('east')!.notAfter);

  cleaned = true;
  await cluster.cleanup();
  await assert.rejects(probe(address, '/live'), /ECONNREFUSED/);
});

test('ready turns 500 naming the datacenter once its intermediate expires and the upstream CA is too close to its end to renew it; live stays 200', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-health-upstream-');
  teardown(t).after(cleanup);
  const pki = opensslCa(dir, 'short-lived', { days: 20 });
  // At real time, not behind it: the upstream CA openssl just made starts now, and nothing here speaks TLS.
  const clock = new FakeClock(Date.now());
  const cluster = await startInProcessCluster(clock, 'meshid-server-health-upstream-', { upstream_ca_cert: pki.cert, upstream_ca_key: pki.key, health_checks: HEALTH });
  teardown(t).after(() => cluster.cleanup());
  const address = cluster.meshidServer.healthAddress()!;
  assert.equal((await probe(address, '/ready')).status, 200);

  let day = 0;
  let ready = await probe(address, '/ready');
  while (ready.status === 200 && day < 20) {
    clock.advance(D);
    day++;
    // The rotation that cannot renew the intermediate fails (and logs); the server runs on.
    await cluster.meshidServer.ca.recheck().catch(() => undefined);
    ready = await probe(address, '/ready');
  }
  assert.equal(ready.status, 500, `still ready after ${day} days`);
  assert.ok(day < 20, 'unready before the upstream CA itself expires');
  const details = healthBody(ready, 'server');
  assert.match(String(details['reason']), /^datacenter "east" has no intermediate CA valid now to sign with \(see meshid-server ca show and the server log\)$/);
  assert.deepEqual(details['intermediates_expire_at'], {});
  assert.equal((await probe(address, '/live')).status, 200, 'the server itself is fine: no restart would help');
});

test('meshid-server run with the health port in use exits 1 with one line naming the setting', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-health-port-');
  teardown(t).after(cleanup);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  teardown(t).after(() => new Promise((resolve) => taken.close(resolve)));
  const port = (taken.address() as net.AddressInfo).port;
  const config = path.join(dir, 'server.json');
  fs.writeFileSync(config, JSON.stringify({ health_checks: { listener_enabled: true, bind_address: '127.0.0.1', bind_port: String(port) } }));
  const adminSocket = path.join(dir, 'admin', 'admin.sock');
  const r = await runRefused(['--config', config, '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'data'), '--bind-address', '127.0.0.1:0', '--admin-socket', adminSocket]);
  assert.equal(r.code, 1, r.err);
  assert.match(
    r.err,
    new RegExp(`^Error: FailedPrecondition: cannot listen on 127\\.0\\.0\\.1:${port} \\(health_checks\\.bind_address, health_checks\\.bind_port\\): another process is listening on that port; stop it or choose another port$`, 'm'),
  );
  assert.equal(fs.existsSync(adminSocket), false, 'the admin socket it had opened is gone');
});

test('a health port in use fails the start before the datastore and the CA are made, so before the agent API listens', async (t) => {
  const { dir, cleanup } = tempDir('meshid-server-health-early-');
  teardown(t).after(cleanup);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  teardown(t).after(() => new Promise((resolve) => taken.close(resolve)));
  const port = (taken.address() as net.AddressInfo).port;
  const dataDir = path.join(dir, 'data');
  const config = compileServerConfig({
    trust_domain: 'example.org',
    datacenters: ['east'],
    data_dir: dataDir,
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(dir, 'admin', 'admin.sock'),
    health_checks: { ...HEALTH, bind_port: port },
  });
  await assert.rejects(
    MeshidServer.start({ config, log: silentLogger(), clock: new FakeClock(Date.now() - 3_600_000) }),
    /cannot listen on 127\.0\.0\.1:\d+ \(health_checks\.bind_address, health_checks\.bind_port\): another process is listening on that port/,
  );
  // The datastore is opened and the CA made before the agent API listens: neither was. A first start probes its
  // ports before it claims the data dir (listen-probe.ts), so not even that was made.
  assert.equal(fs.existsSync(dataDir), false, 'no data dir, no datastore, no CA keys: nothing was made');
  assert.equal(fs.existsSync(config.adminSocket), false);
});

test('live and ready turn 500 with the reason, `meshid-server healthcheck` fails and the agent API\'s gRPC health is NOT_SERVING, once the datastore cannot be read (closed under the running server, standing in for a failed disk)', { timeout: 60_000 }, async (t) => {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const serverLog = capturingLogger('meshid-server');
  const cluster = await startInProcessCluster(clock, 'meshid-server-health-datastore-', { health_checks: HEALTH }, serverLog.log);
  teardown(t).after(() => cluster.cleanup());
  const address = cluster.meshidServer.healthAddress()!;
  assert.equal((await probe(address, '/live')).status, 200);
  const agentApiHealth = agentApiHealthCheck(cluster.meshidServer.agentPort, cluster.bundlePem);
  teardown(t).after(() => agentApiHealth.close());
  assert.equal(await agentApiHealth.check('meshid.agent.v1.Node'), 'SERVING');

  await (cluster.meshidServer as unknown as { ds: { close(): Promise<void> } }).ds.close();
  const live = await probe(address, '/live');
  assert.equal(live.status, 500, live.body);
  assert.match(String(healthBody(live, 'server')['reason']), /^the datastore cannot be read: /);
  // Nor can it serve agents: every agent call reads the datastore.
  const ready = await probe(address, '/ready');
  assert.equal(ready.status, 500, ready.body);
  assert.match(String(healthBody(ready, 'server')['reason']), /^the datastore cannot be read: /);
  // `meshid-server healthcheck` asks SPIRE's question of the admin socket: can the datastore be read.
  const cli = await runNode(SERVER_MAIN, ['healthcheck', '--admin-socket', cluster.meshidServer.config.adminSocket]);
  assert.equal(cli.code, 1, cli.out);
  assert.match(cli.err, /server is not healthy: status NOT_SERVING \(it is stopping, or its datastore cannot be read: the server log says which\)/);
  const said = serverLog.records().filter((r) => /^the datastore cannot be read: grpc\.health\.v1 on the admin socket/.test(String(r['msg'])));
  assert.equal(said.length, 1, 'the log says why, once');
  // A load balancer's gRPC check of the agent API: the server cannot serve agents (told once the answer before the
  // failure is no longer reused).
  clock.advance(WATCH_RECHECK_MS);
  assert.equal(await agentApiHealth.check('meshid.agent.v1.Node'), 'NOT_SERVING');
  assert.equal(await agentApiHealth.check(''), 'NOT_SERVING');
});

test('grpc.health.v1 Checks on the agent API, which anyone who reaches the port may make without a certificate, read the datastore once a second at most, however many come', { timeout: 60_000 }, async (t) => {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-server-health-reuse-');
  teardown(t).after(() => cluster.cleanup());
  // A spy on the real datastore: counts the reads, each still made.
  const ds = (cluster.meshidServer as unknown as { ds: { currentRevision(): Promise<number> } }).ds;
  const read = ds.currentRevision.bind(ds);
  let reads = 0;
  ds.currentRevision = () => {
    reads++;
    return read();
  };
  const agentApiHealth = agentApiHealthCheck(cluster.meshidServer.agentPort, cluster.bundlePem);
  teardown(t).after(() => agentApiHealth.close());
  const watch = watchAgentApiHealth(cluster.meshidServer.agentPort, cluster.bundlePem);
  teardown(t).after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  for (let i = 0; i < 20; i++) assert.equal(await agentApiHealth.check(i % 2 === 0 ? '' : 'meshid.agent.v1.Node'), 'SERVING');
  assert.equal(reads, 1, 'one read for the Watch and twenty Checks within a second');
  clock.advance(WATCH_RECHECK_MS);
  assert.equal(await agentApiHealth.check(''), 'SERVING');
  assert.equal(reads, 2, 'the Watch\'s recheck and the Check after a second share one read');
});

/** grpc.health.v1 Watch of the agent API over TLS without a client certificate: the statuses received. */
function watchAgentApiHealth(port: number, rootsPem: string): { received(count: number): Promise<string[]>; close(): void } {
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const client = new Health(`127.0.0.1:${port}`, agentApiCredentials(rootsPem), { 'grpc.ssl_target_name_override': TLS_NAME });
  const statuses: string[] = [];
  const waiting: Array<() => void> = [];
  const call = (client as unknown as Record<string, (req: unknown) => grpc.ClientReadableStream<{ status?: string }>>)['Watch']!({ service: '' });
  call.on('data', (m: { status?: string }) => {
    statuses.push(m.status ?? 'UNKNOWN');
    waiting.splice(0).forEach((wake) => wake());
  });
  call.on('error', () => undefined);
  return {
    received: async (count) => {
      while (statuses.length < count) await new Promise<void>((resolve) => waiting.push(resolve));
      return [...statuses];
    },
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

function agentApiCredentials(rootsPem: string): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(Buffer.from(rootsPem), null, null, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => (cert.subjectaltname === 'URI:spiffe://example.org/meshid/server' ? undefined : new Error(cert.subjectaltname)),
  });
}

/** grpc.health.v1 Check of the agent API over TLS, as a load balancer makes it: the server's SVID checked, no client certificate. */
function agentApiHealthCheck(port: number, rootsPem: string): { check(service: string): Promise<string>; close(): void } {
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const client = new Health(`127.0.0.1:${port}`, agentApiCredentials(rootsPem), { 'grpc.ssl_target_name_override': TLS_NAME });
  return {
    check: (service) =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res?: { status?: string }) => void) => void>)['Check']!({ service }, (err, res) =>
          err ? reject(err) : resolve(res?.status ?? 'UNKNOWN'),
        ),
      ),
    close: () => client.close(),
  };
}

test('on stop, grpc.health.v1 Watch streams on the admin socket are told NOT_SERVING, then end UNAVAILABLE', { timeout: 60_000 }, async (t) => {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-server-health-watch-');
  let cleaned = false;
  teardown(t).after(() => (cleaned ? undefined : cluster.cleanup()));
  const watch = watchHealth(`unix://${cluster.meshidServer.config.adminSocket}`, 'meshid.admin.v1.Entries');
  teardown(t).after(() => watch.close());
  assert.deepEqual(await watch.received(1), ['SERVING']);
  cleaned = true;
  await cluster.cleanup();
  assert.deepEqual(await watch.received(2), ['SERVING', 'NOT_SERVING']);
  const end = await watch.ended;
  assert.equal(end.code, 14, end.details);
  assert.match(end.details, /meshid-server is shutting down/);
});
