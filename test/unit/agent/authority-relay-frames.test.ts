/**
 * How the authority relay follows a client's first bytes (authority-relay.ts): the largest frame nghttp2 accepts, header
 * blocks it must pass as they came or give up on, padding, and when it decides without waiting for its timers.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { ACK_WAIT_MS, ClientFrames, FIRST_REQUEST_WAIT_MS, handOverAfterFirstRequest } from '../../../src/agent/endpoints/authority-relay.js';
import { CLIENT_PREFACE, http2Frame } from '../../support/http2-frames.js';

const SETTINGS = http2Frame(0x4, 0, 0, Buffer.alloc(0));
const ACK = http2Frame(0x4, 0x1, 0, Buffer.alloc(0));
const raw = (value: string): Buffer => Buffer.concat([Buffer.from([value.length]), Buffer.from(value, 'latin1')]);
/** :method GET, then :authority as a literal with incremental indexing on static name 1. */
const requestBlock = (authority: string): Buffer => Buffer.concat([Buffer.from([0x82, 0x41]), raw(authority)]);

test('a frame of exactly SETTINGS_MAX_FRAME_SIZE (16,384 bytes) is still followed', () => {
  const frames = new ClientFrames();
  frames.take(Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK, http2Frame(0x0, 0, 1, Buffer.alloc(16_384))]));
  assert.equal(frames.passThrough, false);
  const out = frames.take(http2Frame(0x1, 0x4, 3, requestBlock('/run/api.sock')));
  assert.equal(frames.repair.repaired, true, 'the next request is still repaired');
  assert.ok(!Buffer.concat(out).toString('latin1').includes('/run'));
});

test('after a block it could not follow, later HEADERS pass at once and unrepaired: the HPACK state is unknown', () => {
  const frames = new ClientFrames();
  // A HEADERS without END_HEADERS cut by a PING, before the ACK of the agent's SETTINGS.
  frames.take(Buffer.concat([CLIENT_PREFACE, SETTINGS, http2Frame(0x1, 0, 1, Buffer.from([0x82])), http2Frame(0x6, 0, 0, Buffer.alloc(8))]));
  assert.equal(frames.hpackLost, true);
  const open = http2Frame(0x1, 0, 3, requestBlock('/run/api.sock'));
  assert.deepEqual(frames.take(open), [open], 'not held for a CONTINUATION');
  assert.equal(frames.repair.repaired, false);
});

test('a header block held past 64 KiB is given up: its frames go on as they came and later blocks are not repaired', () => {
  const frames = new ClientFrames();
  frames.take(Buffer.concat([CLIENT_PREFACE, SETTINGS]));
  const held: Buffer[] = [http2Frame(0x1, 0, 1, requestBlock('/run/api.sock'))];
  for (let i = 0; i < 5; i++) held.push(http2Frame(0x9, 0, 1, Buffer.alloc(16_000)));
  const out = held.flatMap((f) => frames.take(f));
  assert.equal(frames.hpackLost, true);
  assert.deepEqual(Buffer.concat(out), Buffer.concat(held), 'every frame forwarded unchanged');
  assert.equal(frames.repair.repaired, false);
});

test('padding between a HEADERS fragment and its CONTINUATION is not read as part of the block', () => {
  const block = requestBlock('/run/api/s');
  // The value's last two bytes ("/s") in the CONTINUATION, after the HEADERS' two bytes of padding.
  const headers = http2Frame(0x1, 0x8, 1, Buffer.concat([Buffer.from([2]), block.subarray(0, block.length - 2), Buffer.alloc(2)]));
  const continuation = http2Frame(0x9, 0x4, 1, block.subarray(block.length - 2));
  const frames = new ClientFrames();
  const out = Buffer.concat(frames.take(Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK, headers, continuation])));
  assert.equal(frames.repair.repaired, true);
  assert.equal(out.subarray(out.length - 2).toString('latin1'), '-s', 'the CONTINUATION holds the value\'s repaired end');
  assert.deepEqual(out.subarray(out.length - continuation.length - 2, out.length - continuation.length), Buffer.alloc(2), 'the padding stays zeros');
});

/** An accepted socket the test feeds by hand (its writes kept), and what the relay hands over. */
function accepted(t: TestContext) {
  const socket = new net.Socket();
  const writes: Buffer[] = [];
  socket.write = ((chunk: Buffer) => (writes.push(chunk), true)) as typeof socket.write;
  t.after(() => socket.destroy());
  let handedOver: net.Socket | Duplex | undefined;
  handOverAfterFirstRequest(socket, (connection) => {
    handedOver = connection;
    connection.on('error', () => {});
  });
  return { socket, handed: () => handedOver };
}

test('a client speaking HTTP/1 gets the native socket at once, its bytes pushed back', (t) => {
  const c = accepted(t);
  c.socket.emit('data', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.equal(c.handed(), c.socket);
  assert.equal(c.socket.readableLength, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'.length);
});

test('a PING after the ACK is handed over at once (someone must answer it), without waiting for a request', (t) => {
  const c = accepted(t);
  c.socket.emit('data', Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK, http2Frame(0x6, 0, 0, Buffer.alloc(8))]));
  assert.equal(c.handed(), c.socket);
});

test('a client sending 64 KiB of frames before any request is handed over then, not kept to its timers', (t) => {
  const c = accepted(t);
  const windowUpdate = http2Frame(0x8, 0, 0, Buffer.from([0, 0, 1, 0]));
  c.socket.emit('data', Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK]));
  for (let sent = 0; sent <= 64 * 1024 && c.handed() === undefined; sent += windowUpdate.length) c.socket.emit('data', windowUpdate);
  assert.notEqual(c.handed(), undefined);
});

test('a client whose first request needed repair keeps the relay, which repairs its later requests too', (t) => {
  const c = accepted(t);
  c.socket.emit('data', Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK, http2Frame(0x1, 0x4, 1, requestBlock('/run/api.sock'))]));
  const relay = c.handed();
  assert.notEqual(relay, undefined);
  assert.notEqual(relay, c.socket, 'a relay, not the native socket');
  const read: Buffer[] = [];
  relay!.on('data', (chunk: Buffer) => read.push(chunk));
  // A later request with a new literal :authority: repaired as the first was.
  c.socket.emit('data', http2Frame(0x1, 0x4, 3, requestBlock('/run/b.sock')));
  return new Promise<void>((resolve) => setImmediate(() => {
    const text = Buffer.concat(read).toString('latin1');
    assert.ok(text.includes('-run-b.sock'), 'the later request repaired');
    resolve();
  }));
});

test('a client ending its side ends the relay\'s readable side', async (t) => {
  const c = accepted(t);
  c.socket.emit('data', Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK, http2Frame(0x1, 0x4, 1, requestBlock('/run/api.sock'))]));
  const relay = c.handed()!;
  relay.resume();
  const ended = new Promise<void>((resolve) => relay.once('end', () => resolve()));
  c.socket.emit('end');
  await ended;
});

test('after the ACK a client has FIRST_REQUEST_WAIT_MS for its first request; without an ACK, ACK_WAIT_MS', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const acked = accepted(t);
  acked.socket.emit('data', Buffer.concat([CLIENT_PREFACE, SETTINGS, ACK]));
  const silent = accepted(t);
  silent.socket.emit('data', Buffer.concat([CLIENT_PREFACE, SETTINGS]));
  t.mock.timers.tick(FIRST_REQUEST_WAIT_MS - 1);
  assert.equal(acked.handed(), undefined);
  t.mock.timers.tick(1);
  assert.equal(acked.handed(), acked.socket, 'no request: Node\'s server gets the socket as it is');
  t.mock.timers.tick(ACK_WAIT_MS - FIRST_REQUEST_WAIT_MS - 1);
  assert.equal(silent.handed(), undefined);
  t.mock.timers.tick(1);
  assert.notEqual(silent.handed(), undefined);
  assert.notEqual(silent.handed(), silent.socket, 'the relay, which can still drop the ACK when it comes');
});
