/**
 * A fault of the server's own on the agent API (a bug, a damaged datastore) is INTERNAL to the agent, which can do
 * nothing about it, and an error line in the server's log at its default level, with the cause, for the operator who
 * can. Against a real in-process server whose CA or datastore object is wrapped to fail, as a stand-in for the fault.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { internal } from '../../src/common/errors.js';
import { createLogger, silentLogger } from '../../src/common/log.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { logServerFault, SERVER_FAULT_LOG_WINDOW_MS, setServerFaultLogClock } from '../../src/server/api/handler.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { LEVEL, parseLogLines } from '../support/log-lines.js';
import { attestWithToken, connectNode, nodeCall, type AgentIdentity, type NodeClient } from '../support/node-api-client.js';
import { tempDir } from '../support/server-kit.js';
import { until } from '../support/until.js';
import { takenLoopbackPort } from '../support/taken-port.js';
import { teardown } from '../support/teardown.js';

interface Started {
  server: MeshidServer;
  agent: AgentIdentity;
  client: NodeClient;
  entryId: string;
  errorLines: () => ReturnType<typeof parseLogLines>;
  allLines: () => ReturnType<typeof parseLogLines>;
  /** Stops the server now (the test's own cleanup then leaves it alone). */
  stop: () => Promise<void>;
}

/** An in-process server logging at info, an attested agent connected with its SVID, and one entry parented to it. */
async function started(t: TestContext): Promise<Started> {
  const tmp = tempDir('meshid-server-faults-');
  teardown(t).after(tmp.cleanup);
  const config = compileServerConfig({
    trust_domain: 'example.org', data_dir: path.join(tmp.dir, 'data'), bind_address: '127.0.0.1:0', admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
  });
  const raw: string[] = [];
  const log = createLogger({ name: 'meshid-server', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  const server = await MeshidServer.start({ config, log, clock: new FakeClock(Date.now()) });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= server.stop());
  teardown(t).after(stop);
  const admin = new AdminClient(config.adminSocket);
  teardown(t).after(() => admin.close());
  const roots = certificatesToPem(server.ca.bundle().x509Authorities);
  const { token } = await admin.call('Tokens', 'GenerateJoinToken', {});
  const agent = await attestWithToken({ port: () => server.agentPort }, roots, token!);
  const created = await admin.call('Entries', 'CreateEntries', {
    entries: [{ spiffe_id: 'spiffe://example.org/w', parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:1' }] }],
  });
  const entryId = created.results![0]!.entry!.id!;
  const client = connectNode({ port: () => server.agentPort }, roots, { chain: agent.chain, key: agent.key });
  teardown(t).after(() => client.close());
  const allLines = (): ReturnType<typeof parseLogLines> => parseLogLines(raw.join(''));
  return { server, agent, client, entryId, errorLines: () => allLines().filter((l) => l.level >= LEVEL.error), allLines, stop };
}

test('a signing fault in one item of SignX509Svids is INTERNAL in that item and an error line in the server log', async (t) => {
  const { server, client, entryId, errorLines } = await started(t);
  Object.assign(server.ca, {
    signX509Svid: () => {
      throw new TypeError('a bug in the signer');
    },
  });
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  type Item = { entry_id: string; code?: number; message?: string };
  // The entry reaches the agent's authorized set with the change feed: until then the item is PERMISSION_DENIED.
  let item: Item | undefined;
  for (let attempt = 0; item === undefined; attempt++) {
    assert.ok(attempt < 400, 'the entry never became authorized for the agent');
    const res = await nodeCall<{ results: Item[] }>(client, 'SignX509Svids', { items: [{ entry_id: entryId, csr }] });
    if (res.results[0]!.code !== grpc.status.PERMISSION_DENIED) item = res.results[0]!;
    else await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(item.code, grpc.status.INTERNAL);
  assert.equal(item.message, 'internal error', 'no library message reaches the agent');
  const line = errorLines().find((l) => l['rpc'] === 'SignX509Svids');
  assert.ok(line !== undefined, `no error line for the failed item: ${JSON.stringify(errorLines())}`);
  assert.equal(line['entryId'], entryId);
  assert.match(JSON.stringify(line['err']), /a bug in the signer/);
});

test('a Sync stream the datastore fails (damaged) ends INTERNAL and is an error line in the server log, with the cause', async (t) => {
  const { server, client, errorLines } = await started(t);
  const cause = Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' });
  Object.assign(server.ds, {
    getAgent: () => Promise.reject(internal('the datastore file is damaged: stop the server and restore it from a backup', cause)),
  });
  const ended = await new Promise<grpc.ServiceError>((resolve) => {
    const stream = (client['Sync'] as (req: unknown) => grpc.ClientReadableStream<unknown>)({});
    stream.on('data', () => undefined);
    stream.on('error', resolve);
  });
  assert.equal(ended.code, grpc.status.INTERNAL, ended.details);
  const line = await until('the error line', () => errorLines().find((l) => l.msg === 'sync stream failed'));
  assert.match(JSON.stringify(line['err']), /database disk image is malformed/);
});

test('a fault repeated within the minute is reported with its count when the server stops, before its last line, and nothing comes after', async (t) => {
  const { server, client, entryId, allLines, stop } = await started(t);
  Object.assign(server.ca, {
    signX509Svid: () => {
      throw new TypeError('a bug in the signer');
    },
  });
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const csr = await createCsr(privateKey, publicKey);
  const sign = async (): Promise<number | undefined> =>
    (await nodeCall<{ results: { code?: number }[] }>(client, 'SignX509Svids', { items: [{ entry_id: entryId, csr }] })).results[0]!.code;
  // Authorized once the change feed has carried the entry to the agent's set; the first INTERNAL is the logged one.
  for (let attempt = 0; (await sign()) !== grpc.status.INTERNAL; attempt++) {
    assert.ok(attempt < 400, 'the entry never became authorized for the agent');
    await new Promise((r) => setTimeout(r, 25));
  }
  for (let i = 0; i < 3; i++) assert.equal(await sign(), grpc.status.INTERNAL);
  client.close();
  await stop();
  const lines = allLines();
  const summary = lines.findIndex((l) => l['rpc'] === 'SignX509Svids' && l['repeats'] === 3);
  const last = lines.findIndex((l) => l.msg === 'meshid-server stopped');
  assert.ok(summary >= 0, `no summary of the 3 repeats: ${JSON.stringify(lines.filter((l) => l['rpc'] !== undefined))}`);
  assert.match(String(lines[summary]!.msg), /^request failed, and 3 more like it in the last minute$/);
  assert.ok(last > summary, 'the summary comes before the server says it stopped');
  assert.equal(last, lines.length - 1, `nothing is logged after 'meshid-server stopped': ${JSON.stringify(lines.slice(last + 1))}`);
});

test("a start that fails after its API listeners' fault logs exist (the agent API's port taken) stops them too: a repeat is reported before the start's error, and nothing is logged a minute later (the faults logged through the admin API's logger by the test: no request can be timed into a start)", async (t) => {
  const tmp = tempDir('meshid-server-faults-start-');
  teardown(t).after(tmp.cleanup);
  const takenPort = await takenLoopbackPort(t);
  const config = compileServerConfig({
    trust_domain: 'example.org',
    data_dir: path.join(tmp.dir, 'data'),
    bind_address: `127.0.0.1:${takenPort}`,
    admin_socket: path.join(tmp.dir, 'admin', 'admin.sock'),
  });
  // A data dir a start has claimed: a first start's ports are probed before anything (listen-probe.ts).
  const claiming = compileServerConfig({ trust_domain: 'example.org', data_dir: config.dataDir, bind_address: '127.0.0.1:0', admin_socket: config.adminSocket });
  await (await MeshidServer.start({ config: claiming, log: silentLogger() })).stop();
  const clock = new FakeClock(Date.now());
  teardown(t).after(setServerFaultLogClock(clock));
  const raw: string[] = [];
  const log = createLogger({ name: 'meshid-server', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  // The admin API's logger, as the start makes it: a fault and its repeat within the minute leave its throttle with a
  // window whose summary is pending on the clock.
  const child = log.child.bind(log);
  log.child = ((bindings: Record<string, unknown>, options?: object) => {
    const made = child(bindings, options);
    if (bindings['subsystem'] === 'admin-api') {
      for (let i = 0; i < 2; i++) logServerFault(made, 'ListEntries', new TypeError('a bug in the entry lister'));
    }
    return made;
  }) as unknown as typeof log.child;

  // The agent API listens after the admin API, whose fault log is then made (server.ts).
  await assert.rejects(MeshidServer.start({ config, log, clock }), /cannot listen on 127\.0\.0\.1:\d+ \(--bind-address, bind_address\): another process is listening/);
  const atFailure = parseLogLines(raw.join('')).filter((l) => l['rpc'] === 'ListEntries');
  assert.deepEqual(atFailure.map((l) => l.msg), ['request failed', 'request failed, and 1 more like it in the last minute'], 'the repeat is reported as the start fails');
  clock.advance(2 * SERVER_FAULT_LOG_WINDOW_MS);
  const after = parseLogLines(raw.join('')).filter((l) => l['rpc'] === 'ListEntries');
  assert.equal(after.length, atFailure.length, `nothing logged after the failed start: ${JSON.stringify(after.slice(atFailure.length))}`);
});
