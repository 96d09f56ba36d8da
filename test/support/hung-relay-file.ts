/**
 * A test file that hangs with a thread-relay (test/support/thread-relay.c) connected to a listener of its own and
 * waiting in accept() for a connection nobody makes, never stopping it: test/unit/support/thread-relay-tether.test.ts
 * kills it. The relay's pid goes to the file MESHID_TEST_PID_FILE names once it is ready; the relay binary is
 * MESHID_RELAY_BINARY and its sockets go in MESHID_RELAY_DIR. Not a *.test.js: run-tests.mjs never runs it.
 */
import { test } from 'node:test';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { ThreadRelay } from './thread-relay.js';

test('hangs with a thread-relay waiting for a connection', async () => {
  const dir = process.env['MESHID_RELAY_DIR']!;
  const listener = net.createServer().listen(path.join(dir, 'agent.sock'));
  await once(listener, 'listening');
  const relay = new ThreadRelay(process.env['MESHID_RELAY_BINARY']!, path.join(dir, 'agent.sock'), path.join(dir, 'relay.sock'), 'main-exits');
  await relay.ready();
  fs.writeFileSync(process.env['MESHID_TEST_PID_FILE']!, String(relay.pid));
  await new Promise(() => setInterval(() => {}, 60_000));
});
