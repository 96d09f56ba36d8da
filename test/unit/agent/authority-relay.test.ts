import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Duplex } from 'node:stream';
import { handOverAfterFirstRequest } from '../../../src/agent/endpoints/authority-relay.js';
import { CLIENT_PREFACE, http2Frame } from '../../support/http2-frames.js';


test('the bytes read before the decision are not held for the rest of the connection', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-relay-'));
  const server = net.createServer();
  server.listen(path.join(dir, 's.sock'));
  await once(server, 'listening');
  const client = net.connect(path.join(dir, 's.sock'));
  client.on('error', () => {});
  t.after(() => {
    client.destroy();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  let handedOver: net.Socket | Duplex | undefined;
  t.after(() => socket.destroy());
  handOverAfterFirstRequest(socket, (connection) => {
    handedOver = connection;
    // As Node's HTTP/2 session would.
    connection.on('error', () => {});
  });
  // The client's preface, SETTINGS, ACK and a first request with a valid :authority, as one read of 32 KiB (a
  // large first message), in memory of its own so that its collection can be seen.
  const request = Buffer.concat([
    CLIENT_PREFACE,
    http2Frame(0x4, 0, 0, Buffer.alloc(0)),
    http2Frame(0x4, 0x1, 0, Buffer.alloc(0)),
    http2Frame(0x1, 0x4, 1, Buffer.from([0x82, 0x86, 0x84, 0x41, 0x09, ...Buffer.from('localhost')])),
    http2Frame(0x0, 0, 1, Buffer.alloc(16_000)),
    http2Frame(0x0, 0x1, 1, Buffer.alloc(16_000)),
  ]);
  let memory: ArrayBuffer | undefined = new ArrayBuffer(request.length);
  const collected = new WeakRef(memory);
  request.copy(Buffer.from(memory));
  socket.emit('data', Buffer.from(memory));
  memory = undefined;
  assert.equal(handedOver, socket, 'a plain client keeps the native socket');
  assert.equal(socket.readableLength, request.length - 9, 'everything but the ACK pushed back');
  for (let i = 0; i < 10 && collected.deref() !== undefined; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  assert.equal(collected.deref(), undefined, 'the read bytes are let go once pushed back');
  assert.equal(socket.destroyed, false, 'while the connection is still open');
});
