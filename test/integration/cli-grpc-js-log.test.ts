/**
 * The client commands of both binaries have no log of their own: what grpc-js would write to stderr by itself ("E …"
 * lines) must not land beside the one `Error: …` line meshid prints. A real meshid peer never makes grpc-js log, so
 * the peer here is a stand-in: a bare HTTP/2 server on a Unix socket, the kind of thing an operator points a command
 * at by mistake, answering every call with a response header grpc-js refuses and an UNAVAILABLE status.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import path from 'node:path';
import { AGENT_MAIN } from '../support/cluster.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';

let dir: string;
let cleanup: () => void;
let socket: string;
let peer: http2.Http2Server;

before(async () => {
  ({ dir, cleanup } = tempDir('meshid-cli-grpc-log-'));
  socket = path.join(dir, 'peer.sock');
  peer = http2.createServer();
  peer.on('stream', (stream) => {
    // A non-ASCII header value: grpc-js logs "E Failed to add metadata entry …" and carries on with the call.
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-peer-note': 'caf\u00e9' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '14', 'grpc-message': 'stand-in peer says no' }));
    stream.end();
  });
  await new Promise<void>((resolve) => peer.listen(socket, resolve));
});

after(async () => {
  await new Promise((resolve) => peer.close(resolve));
  cleanup?.();
});

/** Runs a CLI with none of grpc-js's own log settings inherited from the test's environment (undefined: not passed). */
function run(main: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runNode(main, args, { GRPC_VERBOSITY: undefined, GRPC_NODE_VERBOSITY: undefined, GRPC_TRACE: undefined, ...env });
}

function assertOneErrorLine(r: CliResult, line: RegExp): void {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stderr: ${r.err}`);
  assert.equal(r.out, '');
  assert.deepEqual(r.err.split('\n').filter((l) => l !== '').length, 1, `expected one stderr line, got:\n${r.err}`);
  assert.match(r.err.trimEnd(), line);
}

test('meshid-server entry show against a peer grpc-js complains about (stand-in HTTP/2 peer): one Error line, no grpc-js "E" line', async () => {
  const r = await run(SERVER_MAIN, ['entry', 'show', '--admin-socket', socket]);
  assertOneErrorLine(r, /^Error: Unavailable: stand-in peer says no$/);
});

test('meshid-agent api fetch x509 against a peer grpc-js complains about (stand-in HTTP/2 peer): one Error line, no grpc-js "E" line', async () => {
  const r = await run(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', socket]);
  assert.equal(r.code, 1, r.err);
  assert.doesNotMatch(r.err, /^E /m, 'grpc-js wrote its own line');
  assert.match(r.err, /^Error: /);
  assert.equal(r.err.split('\n').filter((l) => l !== '').length, 1, r.err);
});

test('GRPC_VERBOSITY set: the operator asked grpc-js for its diagnostics, and gets them (stand-in HTTP/2 peer)', async () => {
  const r = await run(SERVER_MAIN, ['entry', 'show', '--admin-socket', socket], { GRPC_VERBOSITY: 'ERROR' });
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /^E .*Failed to add metadata entry x-peer-note/m);
  assert.match(r.err, /^Error: Unavailable: stand-in peer says no$/m);
});
