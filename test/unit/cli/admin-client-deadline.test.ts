/**
 * An admin call whose deadline passes: the CLI says the server did not answer in time, naming the admin socket. The
 * peer is a stand-in: an HTTP/2 server on a Unix socket that takes every call and never answers it, so the deadline
 * always runs out first whatever the machine's load.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { errorLine } from '../../../src/common/cli/output.js';
import { AdminClient } from '../../../src/server/cli/admin-client.js';
import { serverCli } from '../../../src/server/cli/server-cli.js';
import { captureIo } from './capture-io.js';
import { tempDir } from '../../support/server-kit.js';

let cleanup: () => void;
let socket: string;
let peer: http2.Http2Server;
const held: http2.ServerHttp2Stream[] = [];

before(async () => {
  let dir: string;
  ({ dir, cleanup } = tempDir('meshid-admin-deadline-'));
  socket = path.join(dir, 'admin.sock');
  peer = http2.createServer();
  peer.on('stream', (stream) => void held.push(stream));
  await new Promise<void>((resolve) => peer.listen(socket, resolve));
});

after(async () => {
  for (const s of held) s.destroy();
  await new Promise((resolve) => peer.close(resolve));
  cleanup?.();
});

test('an admin call past its deadline (stand-in socket that never answers): one line naming the admin socket and the deadline, not grpc-js\'s text', async () => {
  for (const [deadlineMs, shown] of [[1, '1ms'], [300, '300ms']] as const) {
    const client = new AdminClient(socket, deadlineMs);
    try {
      const err = await client.call('Entries', 'ListEntries', {}).then(() => assert.fail('answered'), (e: unknown) => e);
      assert.equal(
        errorLine(err),
        `Error: Unavailable: meshid-server on ${socket} did not answer within the timeout (${shown}): is it running and not overloaded?`,
      );
      assert.equal((err as { cause?: { code?: number } }).cause?.code, status.DEADLINE_EXCEEDED, 'the grpc-js error stays the cause');
    } finally {
      client.close();
    }
  }
});

test('meshid-server healthcheck --timeout (stand-in socket that never answers): gives up after it, naming it and the flag that gives more time, as meshid-agent healthcheck does', async () => {
  for (const timeout of ['1ms', '300ms']) {
    const io = captureIo({});
    const code = await serverCli(['healthcheck', '--admin-socket', socket, '--timeout', timeout], io);
    assert.equal(code, 1);
    assert.equal(
      io.err(),
      `Error: Unavailable: meshid-server on ${socket} did not answer within the timeout (${timeout}): is it running and not overloaded? A longer --timeout gives it more time\n`,
    );
  }
  const help = captureIo({});
  assert.equal(await serverCli(['healthcheck', '--help'], help), 0);
  assert.match(help.out(), /--timeout DURATION +How long to wait for the server \(default 30s\)/);
});
