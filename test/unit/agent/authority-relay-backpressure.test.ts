/**
 * Flow control through the authority relay (authority-relay.ts), over a real Unix socket: a side that does not read
 * holds the other back (the relay buffers a bounded amount, not everything sent), and once it reads again every byte
 * arrives, in order.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { handOverAfterFirstRequest } from '../../../src/agent/endpoints/authority-relay.js';
import { CLIENT_PREFACE, http2Frame } from '../../support/http2-frames.js';

const SETTINGS = http2Frame(0x4, 0, 0, Buffer.alloc(0));
const ACK = http2Frame(0x4, 0x1, 0, Buffer.alloc(0));
/** A first request whose :authority (a socket path, as grpc-java sends it) makes the relay take the connection. */
const REQUEST = http2Frame(0x1, 0x4, 1, Buffer.concat([Buffer.from([0x82, 0x41, 13]), Buffer.from('/run/api.sock', 'latin1')]));
/** Far more than the kernel's socket buffers and the streams' high-water marks together. */
const TOTAL_BYTES = 8 * 1024 * 1024;
/** What the relay and the accepted socket may hold between them while a side does not read. */
const BOUND_BYTES = 1024 * 1024;

/** DATA frames of 16,000 bytes, each filled with its own number, so that a lost or reordered frame shows. */
function numberedFrames(totalBytes: number): Buffer {
  const frames: Buffer[] = [];
  for (let i = 0, sent = 0; sent < totalBytes; i++) {
    const payload = Buffer.alloc(16_000);
    for (let o = 0; o + 4 <= payload.length; o += 4) payload.writeUInt32BE(i, o);
    const frame = http2Frame(0x0, 0, 1, payload);
    frames.push(frame);
    sent += frame.length;
  }
  return Buffer.concat(frames);
}

/** A client connected to an accepted socket that has been handed over through the relay. */
async function relayed(t: TestContext) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-relay-bp-'));
  const server = net.createServer();
  server.listen(path.join(dir, 's.sock'));
  await once(server, 'listening');
  const client = net.connect(path.join(dir, 's.sock'));
  client.on('error', () => {});
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  t.after(() => {
    client.destroy();
    socket.destroy();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const handed = new Promise<net.Socket | Duplex>((resolve) => handOverAfterFirstRequest(socket, resolve));
  client.write(Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK, REQUEST]));
  const relay = await handed;
  assert.notEqual(relay, socket, 'the relay took the connection');
  relay.on('error', () => {});
  // The agent's own SETTINGS, sent before the decision.
  const [settings] = (await once(client, 'data')) as [Buffer];
  assert.deepEqual(settings, SETTINGS);
  return { client, socket, relay: relay as Duplex };
}

/** Turns of the event loop until `bytes()` has stopped changing for a while: the kernel's buffers have filled. */
async function settled(bytes: () => number): Promise<void> {
  let last = -1;
  for (let unchanged = 0; unchanged < 20; ) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const now = bytes();
    unchanged = now === last ? unchanged + 1 : 0;
    last = now;
  }
}

test('a server side that does not read stops the relay reading the client; all of it arrives in order once it reads', async (t) => {
  const { client, socket, relay } = await relayed(t);
  const data = numberedFrames(TOTAL_BYTES);
  client.write(data);
  // Nothing reads the relay (as a busy HTTP/2 session would not): the relay must stop reading the socket.
  await settled(() => relay.readableLength + socket.readableLength);
  assert.ok(relay.readableLength + socket.readableLength < BOUND_BYTES, `held ${relay.readableLength + socket.readableLength} bytes of ${data.length}`);
  assert.ok(client.writableLength > 0, 'the client is held back');

  const received: Buffer[] = [];
  relay.on('data', (chunk: Buffer) => received.push(chunk));
  // The preface, the client's SETTINGS and the repaired request, then the DATA frames as sent.
  const expectedLength = CLIENT_PREFACE.length + SETTINGS.length + REQUEST.length + data.length;
  while (received.reduce((n, b) => n + b.length, 0) < expectedLength) await once(relay, 'data');
  const all = Buffer.concat(received);
  assert.equal(all.length, expectedLength);
  assert.ok(all.subarray(all.length - data.length).equals(data), 'every DATA frame, in order');
  assert.equal(client.writableLength, 0, 'the client has written everything');
});

test('a client that does not read stops the relay taking the server\'s bytes; all of them arrive in order once it reads', async (t) => {
  const { client, relay } = await relayed(t);
  client.pause();
  const data = numberedFrames(TOTAL_BYTES);
  let accepted = 0;
  let written = 0;
  // As Node's HTTP/2 session writes: on until write() says stop, then again at 'drain'.
  const writeMore = (): void => {
    while (written < data.length) {
      const chunk = data.subarray(written, written + 65_536);
      written += chunk.length;
      accepted = written;
      if (!relay.write(chunk)) return;
    }
  };
  relay.on('drain', writeMore);
  writeMore();
  await settled(() => accepted);
  assert.ok(written < data.length, `the relay took all ${data.length} bytes though the client read none`);
  assert.ok(relay.writableLength < BOUND_BYTES, `the relay holds ${relay.writableLength} bytes`);

  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  client.resume();
  while (received.reduce((n, b) => n + b.length, 0) < data.length) await once(client, 'data');
  assert.ok(Buffer.concat(received).equals(data), 'every byte, in order');
});
