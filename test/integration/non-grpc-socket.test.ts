/**
 * Each CLI pointed at a Unix socket where a program that does not speak gRPC listens (real listeners in this
 * process: one that answers "hello" and hangs up, one that closes every connection at once, an HTTP/1 server, one
 * that never says a word): the operator is told plainly that nothing speaking gRPC listens there and which flag to fix, not
 * grpc-js's "Failed to connect" or "Protocol error", nor "cannot reach … is it running?".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { AGENT_MAIN } from '../support/cluster.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';

const { dir, cleanup } = tempDir('meshid-non-grpc-socket-');
const listeners: net.Server[] = [];
const sockets = {
  greeting: path.join(dir, 'greeting.sock'),
  closing: path.join(dir, 'closing.sock'),
  http1: path.join(dir, 'http1.sock'),
  silent: path.join(dir, 'silent.sock'),
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
});

after(async () => {
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
const ANSWERS: Record<'greeting' | 'closing' | 'http1', string> = {
  greeting: 'it answers "hello"',
  closing: 'it closes the connection without a word',
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

test('a listener that takes the connection and never answers is told apart from a slow agent once the deadline passes', async () => {
  assertError(
    await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--timeout', '1s', '--socket-path', sockets.silent]),
    new RegExp(`^Error: FailedPrecondition: nothing speaking gRPC listens on ${escape(sockets.silent)} \\(it accepts the connection but never answers\\), so it is not a meshid-agent socket`),
  );
});
