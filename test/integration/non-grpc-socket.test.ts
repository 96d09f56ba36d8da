/**
 * Each CLI pointed at a Unix socket where a program that does not speak gRPC listens (real listeners in this
 * process: one that answers "hello" and hangs up, one that answers "hello" and stays open, one that closes every
 * connection at once, an HTTP/1 server, one that never says a word): the operator is told plainly that nothing speaking gRPC listens there and which flag to fix, not
 * grpc-js's "Failed to connect" or "Protocol error", nor "cannot reach … is it running?".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { WorkloadApiClient } from '../../src/agent/cli/workload-client.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { UdsServer } from '../../src/agent/endpoints/uds-server.js';
import { silentLogger } from '../../src/common/log.js';
import { AGENT_MAIN } from '../support/cluster.js';
import { publicTempDir } from '../support/peer-process.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';

const { dir, cleanup } = tempDir('meshid-non-grpc-socket-');
const listeners: net.Server[] = [];
/** The lingering listener's connections, which only the test ends: a server's close() waits for them. */
const lingering = new Set<net.Socket>();
const sockets = {
  greeting: path.join(dir, 'greeting.sock'),
  closing: path.join(dir, 'closing.sock'),
  http1: path.join(dir, 'http1.sock'),
  silent: path.join(dir, 'silent.sock'),
  lingering: path.join(dir, 'lingering.sock'),
};

async function listen(server: net.Server, socketPath: string): Promise<void> {
  listeners.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
}

before(async () => {
  // Answers the client's first bytes and hangs up: one that greeted and stayed open would hold grpc-js (waiting for a
  // whole HTTP/2 frame) until the call's deadline, as the silent one does.
  await listen(net.createServer((c) => { c.on('error', () => undefined); c.once('data', () => c.end('hello\n')); }), sockets.greeting);
  await listen(net.createServer((c) => c.destroy()), sockets.closing);
  await listen(http.createServer((_req, res) => res.end('ok')), sockets.http1);
  await listen(net.createServer((c) => { c.on('error', () => undefined); c.on('data', () => undefined); }), sockets.silent);
  // Greets, fewer bytes than an HTTP/2 frame header, and stays open.
  await listen(
    net.createServer((c) => {
      lingering.add(c);
      c.on('error', () => undefined);
      c.once('data', () => c.write('hello\n'));
    }),
    sockets.lingering,
  );
});

after(async () => {
  for (const c of lingering) c.destroy();
  for (const l of listeners) {
    (l as http.Server).closeAllConnections?.();
    await new Promise((r) => l.close(r));
  }
  cleanup();
});

/** Asserts a failed command: exit 1, nothing on stdout, exactly one stderr line matching `line`. */
function assertError(r: CliResult, line: RegExp): void {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stdout: ${r.out}; stderr: ${r.err}`);
  assert.equal(r.out, '', 'a failure prints nothing on stdout');
  assert.equal(r.err.split('\n').filter((l) => l !== '').length, 1, `expected one stderr line, got:\n${r.err}`);
  assert.match(r.err.trimEnd(), line);
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const ANSWERS: Record<'greeting' | 'http1', string> = {
  greeting: 'it answers "hello"',
  http1: 'it answers HTTP/1',
};

test('meshid-server admin commands and healthcheck on a socket that does not speak gRPC say so, naming the socket and --admin-socket', async () => {
  for (const [name, answer] of Object.entries(ANSWERS)) {
    const socketPath = sockets[name as keyof typeof ANSWERS];
    const expected = new RegExp(
      `^Error: FailedPrecondition: nothing speaking gRPC listens on ${escape(socketPath)} \\(${escape(answer)}\\), so it is not a meshid-server admin socket: check --admin-socket \\(-socketPath\\) or MESHID_ADMIN_SOCKET$`,
    );
    assertError(await runNode(SERVER_MAIN, ['entry', 'show', '--admin-socket', socketPath]), expected);
    assertError(await runNode(SERVER_MAIN, ['healthcheck'], { MESHID_ADMIN_SOCKET: socketPath }), expected);
  }
});

test('meshid-agent api fetch, api watch and healthcheck on a socket that does not speak gRPC say so, naming the socket and --socket-path', async () => {
  for (const [name, answer] of Object.entries(ANSWERS)) {
    const socketPath = sockets[name as keyof typeof ANSWERS];
    const expected = new RegExp(
      `^Error: FailedPrecondition: nothing speaking gRPC listens on ${escape(socketPath)} \\(${escape(answer)}\\), so it is not a meshid-agent socket: check --socket-path \\(-socketPath\\) or SPIFFE_ENDPOINT_SOCKET$`,
    );
    for (const command of [['api', 'fetch', 'x509'], ['api', 'fetch', 'jwt', '--audience', 'a'], ['api', 'watch'], ['healthcheck']]) {
      assertError(await runNode(AGENT_MAIN, [...command, '--socket-path', socketPath]), expected);
    }
  }
});

// A hang-up without a word or no answer at all is also what the daemon itself does (shutting down, refusing a
// connection, hung past the deadline): named as either, UNAVAILABLE, never as a wrong socket.
test('a listener that hangs up without a word, or never answers, is named as the daemon refusing or hung, or another program', async () => {
  assertError(
    await runNode(SERVER_MAIN, ['entry', 'show', '--admin-socket', sockets.closing]),
    new RegExp(
      `^Error: Unavailable: what listens on ${escape(sockets.closing)} closes the connection without a word: a meshid-server shutting down, or a program that does not speak gRPC \\(check --admin-socket`,
    ),
  );
  assertError(
    await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', sockets.closing]),
    new RegExp(
      `^Error: Unavailable: what listens on ${escape(sockets.closing)} closes the connection without a word: a meshid-agent shutting down or refusing a uid that holds max_connections_per_uid connections already; see its log, or a program that does not speak gRPC \\(check --socket-path`,
    ),
  );
  assertError(
    await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--timeout', '1s', '--socket-path', sockets.silent]),
    new RegExp(`^Error: Unavailable: what listens on ${escape(sockets.silent)} accepts the connection but did not answer within the timeout \\(1s\\): a meshid-agent that is hung or overloaded, or a program`),
  );
});

// The deadline is the operator's: the command ends when it passes (the probe after it waits a moment, not the second
// it used to), saying which flag gives more time. Timings are not asserted: a loaded machine stretches them.
test('meshid-server and meshid-agent healthcheck --timeout on a listener that never answers: end at the timeout, naming it and --timeout, alike', async () => {
  const cases = [
    [SERVER_MAIN, ['healthcheck', '--admin-socket', sockets.silent, '--timeout', '300ms'], 'meshid-server', '--admin-socket (-socketPath) or MESHID_ADMIN_SOCKET'],
    [AGENT_MAIN, ['healthcheck', '--socket-path', sockets.silent, '--timeout', '300ms'], 'meshid-agent', '--socket-path (-socketPath) or SPIFFE_ENDPOINT_SOCKET'],
  ] as const;
  for (const [main, argv, daemon, flags] of cases) {
    assertError(
      await runNode(main, [...argv]),
      new RegExp(
        `^Error: Unavailable: what listens on ${escape(sockets.silent)} accepts the connection but did not answer within the timeout \\(300ms\\): ` +
          `a ${daemon} that is hung or overloaded, or a program that does not speak gRPC \\(check ${escape(flags)}\\)\\. A longer --timeout gives it more time$`,
      ),
    );
  }
});

test('an agent closing the connections of a uid at max_connections_per_uid (a real UdsServer, cap 1) is not named a socket where nothing speaks gRPC', async (t) => {
  const agentDir = publicTempDir('meshid-non-grpc-cap-');
  const socketPath = path.join(agentDir, 'run', 'agent.sock');
  const grpcServer = new grpc.Server();
  const uds = new UdsServer({ socketPath, grpcServer, log: silentLogger(), maxConnectionsPerUid: 1 });
  await uds.start();
  // The start-up self-test's own connection is gone first.
  while (uds.openConnections() > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  // This uid's one connection, held open (the agent counts it from its accept).
  const holder = net.createConnection(socketPath);
  holder.on('error', () => undefined);
  t.after(async () => {
    holder.destroy();
    grpcServer.forceShutdown();
    await uds.close();
    fs.rmSync(agentDir, { recursive: true, force: true });
  });
  await new Promise((resolve) => holder.once('connect', resolve));
  while (uds.openConnections() < 1) await new Promise((resolve) => setImmediate(resolve));
  const capped = new WorkloadApiClient(socketPath, { ownConnection: true, timeoutMs: 5000 });
  try {
    await assert.rejects(capped.fetchX509Svid(), (err: Error) => {
      assert.doesNotMatch(err.message, /nothing speaking gRPC/);
      assert.match(err.message, /refusing a uid that holds max_connections_per_uid connections already/);
      return true;
    });
  } finally {
    capped.close();
  }
});

// grpc-js waits for a whole HTTP/2 frame from a listener that sent a few other bytes and stays open: the calls below
// have deadlines of ten minutes, so only the early probe ends them within the test's timeout.
test('a listener that greets with a few bytes and stays open ends an admin or Workload API call as not speaking gRPC, long before its deadline', { timeout: 60_000 }, async () => {
  const socketPath = sockets.lingering;
  const notGrpc = (socket: string, flags: string): RegExp =>
    new RegExp(`^nothing speaking gRPC listens on ${escape(socketPath)} \\(it answers "hello"\\), so it is not a ${socket}: check ${escape(flags)}$`);
  const admin = new AdminClient(socketPath, 600_000);
  try {
    await assert.rejects(admin.call('Entries', 'ListEntries', {}), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'failed_precondition');
      assert.match(err.message, notGrpc('meshid-server admin socket', '--admin-socket (-socketPath) or MESHID_ADMIN_SOCKET'));
      return true;
    });
  } finally {
    admin.close();
  }
  const workload = new WorkloadApiClient(socketPath, { ownConnection: true, timeoutMs: 600_000, probeStalledConnection: true });
  try {
    const agentSocket = notGrpc('meshid-agent socket', '--socket-path (-socketPath) or SPIFFE_ENDPOINT_SOCKET');
    await assert.rejects(workload.fetchX509Svid(), (err: Error) => (assert.match(err.message, agentSocket), true));
    await assert.rejects(workload.fetchJwtSvid(['a']), (err: Error) => (assert.match(err.message, agentSocket), true));
    await assert.rejects(workload.health(), (err: Error) => (assert.match(err.message, agentSocket), true));
  } finally {
    workload.close();
  }
  // The admin CLI's own deadline is 30 s, and the agent CLI's here ten minutes: past the test's timeout had they waited.
  assertError(
    await runNode(SERVER_MAIN, ['entry', 'show', '--admin-socket', socketPath]),
    new RegExp(`^Error: FailedPrecondition: ${notGrpc('meshid-server admin socket', '--admin-socket (-socketPath) or MESHID_ADMIN_SOCKET').source.slice(1)}`),
  );
  // api watch has no deadline at all unless given --timeout: it waited forever.
  for (const command of [['api', 'fetch', 'x509', '--timeout', '10m'], ['api', 'watch']]) {
    assertError(
      await runNode(AGENT_MAIN, [...command, '--socket-path', socketPath]),
      new RegExp(`^Error: FailedPrecondition: ${notGrpc('meshid-agent socket', '--socket-path (-socketPath) or SPIFFE_ENDPOINT_SOCKET').source.slice(1)}`),
    );
  }
});
