/**
 * The agent's Unix-socket listener with real grpc-js and real client processes: every call must see the credentials
 * of the process that made it, through `call.getPeer()` → `UdsServer.peerOf()` (SPEC-NOTES §7: the caller is
 * identified out of band, never by anything it sends).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import serverInterceptorsModule, { BaseServerInterceptingCall, type ConnectionInfo } from '@grpc/grpc-js/build/src/server-interceptors.js';
import type { Duplex } from 'node:stream';
import { UdsServer } from '../../src/agent/endpoints/uds-server.js';
import { serverSessions } from '../../src/common/grpc/server-sessions.js';
import { FIRST_REQUEST_WAIT_MS } from '../../src/agent/endpoints/authority-relay.js';
import { createSelfTestServer, runSelfTest } from '../../src/agent/endpoints/uds-self-test.js';
import { UnixWorkloadAttestor } from '../../src/agent/attestor/unix-workload-attestor.js';
import { peerCredentials, type PeerCredentials, type PeerInfo } from '../../src/agent/attestor/peer-credentials.js';
import { MeshidError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/log.js';
import { formatSelector } from '../../src/common/spiffe/selector.js';
import { packageRoot } from '../../src/common/paths.js';
import { BASE_SERVER_OPTIONS } from '../../src/common/grpc/server-options.js';
import { publicTempDir } from '../support/peer-process.js';
import { until } from '../support/until.js';
import { CLIENT_PREFACE, http2Frame } from '../support/http2-frames.js';
import { teardown } from '../support/teardown.js';

const SERVICE = '/meshid.test.PeerEcho';
const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString('utf8')),
};

interface Reply {
  peer: string;
  pid: number | null;
  uid: number | null;
  gid: number | null;
  selectors: string[];
  n?: number;
}

/** A gRPC server whose handlers answer with what the UdsServer and the attestor say about the caller. */
function echoServer(uds: () => UdsServer): { server: grpc.Server; seenPeers: string[]; interceptorPeers: string[] } {
  const seenPeers: string[] = [];
  const interceptorPeers: string[] = [];
  const attestor = new UnixWorkloadAttestor({ sha256: false });
  const describe = (peerString: string): Reply => {
    seenPeers.push(peerString);
    const peer = uds().peerOf(peerString);
    return {
      peer: peerString,
      pid: peer?.pid ?? null,
      uid: peer?.uid ?? null,
      gid: peer?.gid ?? null,
      selectors: peer === undefined ? [] : attestor.attest(peer).map(formatSelector),
    };
  };
  const method = (name: string, responseStream: boolean, requestStream = false) => ({
    path: `${SERVICE}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  });
  // Where the agent's interceptors will look the peer up.
  const recordPeer: grpc.ServerInterceptor = (_method, call) => {
    interceptorPeers.push(call.getConnectionInfo().remoteAddress ?? 'none');
    return new grpc.ServerInterceptingCall(call);
  };
  // The agent's options (channelz off, which changes what grpc-js records of its connections).
  const server = new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [recordPeer] });
  server.addService(
    { who: method('Who', false), stream: method('Stream', true), chat: method('Chat', true, true), retired: method('Retired', false), retiredOnMessage: method('RetiredOnMessage', true, true) },
    {
      who: (call: grpc.ServerUnaryCall<unknown, Reply>, cb: grpc.sendUnaryData<Reply>) => cb(null, describe(call.getPeer())),
      // As a call whose caller no longer attests: the connection is retired, and the status follows `delayMs` later
      // (a loaded machine, where grpc-js writes it behind other work).
      retired: (call: grpc.ServerUnaryCall<{ delayMs: number }, Reply>, cb: grpc.sendUnaryData<Reply>) => {
        uds().retire(call.getPeer());
        setTimeout(() => cb({ code: grpc.status.UNAVAILABLE, details: 'the caller changed its uid' }), call.request.delayMs);
      },
      // The same on a stream: a message without delayMs is answered (the stream is open), one with it retires the
      // connection, as a recheck that fails would.
      retiredOnMessage: (call: grpc.ServerDuplexStream<{ delayMs?: number }, Reply>) => {
        call.on('data', (req: { delayMs?: number }) => {
          if (req.delayMs === undefined) {
            call.write(describe(call.getPeer()));
            return;
          }
          uds().retire(call.getPeer());
          setTimeout(() => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the caller changed its uid' }), req.delayMs);
        });
      },
      stream: (call: grpc.ServerWritableStream<{ count: number }, Reply>) => {
        for (let n = 0; n < call.request.count; n++) call.write({ ...describe(call.getPeer()), n });
        call.end();
      },
      chat: (call: grpc.ServerDuplexStream<unknown, Reply>) => {
        call.on('data', () => call.write(describe(call.getPeer())));
        call.on('end', () => call.end());
      },
    },
  );
  return { server, seenPeers, interceptorPeers };
}

/** `credentials` stands in for the peer-credential calls (the addon's by default). */
async function startUds(t: { after(fn: () => Promise<void> | void): void }, socketName = 'agent.sock', maxConnectionsPerUid?: number, credentials?: PeerCredentials) {
  const dir = publicTempDir('meshid-uds-');
  const socketPath = path.join(dir, 'run', socketName);
  let uds: UdsServer | undefined;
  const { server, seenPeers, interceptorPeers } = echoServer(() => uds!);
  uds = new UdsServer({
    socketPath,
    grpcServer: server,
    log: silentLogger(),
    ...(maxConnectionsPerUid !== undefined ? { maxConnectionsPerUid } : {}),
    ...(credentials !== undefined ? { credentials } : {}),
  });
  await uds.start();
  teardown(t).after(async () => {
    server.forceShutdown();
    await uds!.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, socketPath, uds, server, seenPeers, interceptorPeers };
}

function newClient(socketPath: string): grpc.Client {
  return new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
}

function who(client: grpc.Client): Promise<Reply> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(`${SERVICE}/Who`, json.serialize, json.deserialize as (b: Buffer) => Reply, {}, (err, value) =>
      err ? reject(err) : resolve(value!),
    ),
  );
}

test('call.getPeer() returns the injected remoteAddress with this grpc-js, and peerOf maps it to our own process', async (t) => {
  const { socketPath, uds, seenPeers, interceptorPeers } = await startUds(t);
  const version = JSON.parse(fs.readFileSync(path.join(packageRoot, 'node_modules/@grpc/grpc-js/package.json'), 'utf8')).version as string;
  assert.match(version, /^1\.14\./);
  const client = newClient(socketPath);
  teardown(t).after(() => client.close());
  const reply = await who(client);
  assert.match(reply.peer, /^uds-peer#\d+$/);
  assert.deepEqual(seenPeers, [reply.peer]);
  assert.deepEqual(interceptorPeers, [reply.peer], 'server interceptors see the same key in getConnectionInfo()');
  assert.deepEqual({ pid: reply.pid, uid: reply.uid, gid: reply.gid }, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  assert.ok(reply.selectors.includes('unix:uid:0'));
  // A second call on the same connection carries the same key.
  assert.equal((await who(client)).peer, reply.peer);
  assert.equal(uds.peerOf('unknown'), undefined);
  assert.equal(uds.peerOf('uds-peer#999999'), undefined);
  assert.equal(uds.peerOf(''), undefined);
});

test('a client sending the socket path as :authority (as grpc-java does) goes through the relay and keeps its own peer key and credentials', async (t) => {
  const { socketPath, uds, seenPeers, interceptorPeers } = await startUds(t);
  const plain = newClient(socketPath);
  const relayed = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': socketPath });
  teardown(t).after(() => {
    plain.close();
    relayed.close();
  });
  const first = await who(plain);
  const reply = await who(relayed);
  assert.match(reply.peer, /^uds-peer#\d+$/);
  assert.notEqual(reply.peer, first.peer, 'each connection has its own key');
  assert.deepEqual(interceptorPeers, seenPeers);
  assert.deepEqual({ pid: reply.pid, uid: reply.uid, gid: reply.gid }, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  // Later calls on the relayed connection (:authority now by HPACK index) keep the key.
  assert.equal((await who(relayed)).peer, reply.peer);
  // Retiring finds the relayed connection's session by its key: the client's next call comes on a new connection.
  uds.retire(reply.peer);
  let next = reply.peer;
  for (let i = 0; i < 50 && next === reply.peer; i++) next = (await who(relayed)).peer;
  assert.notEqual(next, reply.peer);
  await until('the retired connection closes', () => (uds.peerOf(reply.peer) === undefined ? true : undefined));
});


/** A Who call's frames: literals without indexing, raw strings, `authority` as :authority. */
function whoRequest(stream: number, authority: string, pad: number): Buffer[] {
  const raw = (s: string): Buffer => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')]);
  // :method POST, :scheme http, :path, :authority, content-type, te.
  const headers = Buffer.concat([Buffer.from([0x83, 0x86, 0x04]), raw(`${SERVICE}/Who`), Buffer.from([0x01]), raw(authority), Buffer.from([0x0f, 0x10]), raw('application/grpc'), Buffer.from([0x00]), raw('te'), raw('trailers')]);
  const message = Buffer.from(JSON.stringify({ pad: 'x'.repeat(pad) }));
  const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), message]);
  body.writeUInt32BE(message.length, 1);
  const frames = [http2Frame(0x1, 0x4, stream, headers)];
  for (let offset = 0; offset < body.length; offset += 16_384) {
    frames.push(http2Frame(0x0, offset + 16_384 >= body.length ? 0x1 : 0, stream, body.subarray(offset, offset + 16_384)));
  }
  return frames;
}

/** A client writing raw HTTP/2 and recording what the agent answers; it acknowledges SETTINGS as they come if `ack`. */
async function rawH2Client(t: { after(fn: () => void): void }, socketPath: string, ack: boolean) {
  const socket = net.connect(socketPath);
  teardown(t).after(() => socket.destroy());
  socket.on('error', () => {});
  const state = { settingsSeen: 0, goaway: undefined as number | undefined, resets: [] as number[], ended: new Set<number>(), data: new Map<number, Buffer>() };
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
      const length = buffered.readUIntBE(0, 3);
      const [type, flags, stream] = [buffered[3]!, buffered[4]!, buffered.readUInt32BE(5) & 0x7fffffff];
      const payload = buffered.subarray(9, 9 + length);
      buffered = buffered.subarray(9 + length);
      if (type === 0x4 && (flags & 0x1) === 0) {
        state.settingsSeen += 1;
        if (ack) socket.write(http2Frame(0x4, 0x1, 0, Buffer.alloc(0)));
      }
      if (type === 0x7) state.goaway = payload.readUInt32BE(4);
      if (type === 0x3) state.resets.push(stream);
      if (type === 0x0) state.data.set(stream, Buffer.concat([state.data.get(stream) ?? Buffer.alloc(0), payload]));
      if ((type === 0x1 || type === 0x0) && (flags & 0x1) !== 0) state.ended.add(stream);
    }
  });
  await once(socket, 'connect');
  const reply = (stream: number): Reply => JSON.parse(state.data.get(stream)!.subarray(5).toString('utf8')) as Reply;
  const done = (stream: number): Promise<boolean> =>
    until(`stream ${stream} answered, reset, or the connection failed`, () => (state.ended.has(stream) || state.resets.includes(stream) || state.goaway !== undefined || socket.destroyed ? true : undefined));
  return { socket, state, reply, done };
}

test('a client that sends over 64 KiB before acknowledging the agent\'s SETTINGS keeps its connection, its later calls answered under its own key', async (t) => {
  // RFC 7540 §3.5 lets a client send frames before it has read the server's preface: a large first message goes out
  // before the ACK of the agent's own SETTINGS, so the agent must decide before that ACK arrives, and the ACK must
  // still never reach nghttp2 (which, having sent one SETTINGS, fails the connection on a second ACK).
  const { socketPath } = await startUds(t);
  const { socket, state, reply, done } = await rawH2Client(t, socketPath, false);
  // Within the 65,535-octet flow-control windows a client may use at once, past the agent's 64 KiB peek.
  socket.write(Buffer.concat([CLIENT_PREFACE, http2Frame(0x4, 0, 0, Buffer.alloc(0)), ...whoRequest(1, 'localhost', 65_500)]));
  await done(1);
  assert.equal(state.settingsSeen, 2, 'the agent\'s SETTINGS and Node\'s');
  // Only now the ACKs of both, then a second call on the same connection.
  socket.write(Buffer.concat([http2Frame(0x4, 0x1, 0, Buffer.alloc(0)), http2Frame(0x4, 0x1, 0, Buffer.alloc(0)), ...whoRequest(3, 'localhost', 10)]));
  await done(3);
  assert.equal(state.goaway, undefined, 'no GOAWAY');
  assert.match(reply(1).peer, /^uds-peer#\d+$/);
  assert.equal(reply(3).peer, reply(1).peer);
  assert.equal(reply(3).pid, process.pid);
});

test('a first request left unread while UidFairQueue holds its uid\'s reading is still repaired, however long the hold', async (t) => {
  const { socketPath, uds } = await startUds(t);
  const { socket, state, reply, done } = await rawH2Client(t, socketPath, true);
  socket.write(Buffer.concat([CLIENT_PREFACE, http2Frame(0x4, 0, 0, Buffer.alloc(0))]));
  await until('the agent\'s SETTINGS', () => (state.settingsSeen === 1 ? true : undefined));
  // The agent reads the ACK (and starts waiting for the request) in the same turn as it reads the ACK's bytes: once its
  // end of the connection has read the preface, the client's SETTINGS and the ACK, hold the uid's reading past that wait.
  const agentSocket = [...(uds as unknown as { sockets: Map<string, net.Socket> }).sockets.values()][0]!;
  const prefaceSettingsAck = CLIENT_PREFACE.length + 9 + 9;
  await until('the agent read the client\'s ACK', () => (agentSocket.bytesRead >= prefaceSettingsAck ? true : undefined));
  uds.pauseReading(process.getuid!());
  socket.write(Buffer.concat(whoRequest(1, socketPath, 10)));
  await new Promise((resolve) => setTimeout(resolve, FIRST_REQUEST_WAIT_MS + 1000));
  uds.resumeReading(process.getuid!());
  await done(1);
  assert.deepEqual(state.resets, [], 'not reset for its :authority');
  assert.equal(reply(1).pid, process.pid);
});

/**
 * A relayed connection (its :authority the socket path) whose relay grpc-js has stopped reading, as Node's HTTP/2
 * session does while a write of its waits on the client: the relay holds a request past its high-water mark and stops
 * reading the socket, which then holds a second request past its own, so that Node has stopped the socket's handle
 * itself and the kernel holds nothing more. Returns the client, the agent's socket and the relay.
 */
async function relayHeldBack(t: { after(fn: () => Promise<void> | void): void }) {
  const { socketPath, uds, server } = await startUds(t);
  const client = await rawH2Client(t, socketPath, true);
  client.socket.write(Buffer.concat([CLIENT_PREFACE, http2Frame(0x4, 0, 0, Buffer.alloc(0)), ...whoRequest(1, socketPath, 10)]));
  await client.done(1);
  const agentSocket = [...(uds as unknown as { sockets: Map<string, net.Socket> }).sockets.values()][0]!;
  const sessions = serverSessions(server);
  assert.equal(sessions.length, 1);
  const relay = (sessions[0]!.socket as unknown as { stream: Duplex }).stream;
  assert.ok(relay !== undefined && (relay as unknown) !== agentSocket, 'the connection is relayed');
  // What Node's JSStreamSocket does when the session stops reading.
  relay.pause();
  client.socket.write(Buffer.concat(whoRequest(3, socketPath, 20_000)));
  await until('the relay to stop reading the socket', () => (agentSocket.isPaused() ? true : undefined));
  client.socket.write(Buffer.concat(whoRequest(5, socketPath, 20_000)));
  await until('the socket to hold the second request', () => (agentSocket.readableLength >= agentSocket.readableHighWaterMark ? true : undefined));
  return { ...client, uds, agentSocket, relay };
}

test('a relayed connection whose uid is paused and resumed while grpc-js is not reading it keeps its connection (no EALREADY)', async (t) => {
  const { state, reply, done, uds, agentSocket, relay } = await relayHeldBack(t);
  uds.pauseReading(process.getuid!());
  uds.resumeReading(process.getuid!());
  // grpc-js reads again: the relay reads the socket again.
  relay.resume();
  await done(3);
  await done(5);
  assert.equal(agentSocket.destroyed, false, `the connection was destroyed: ${agentSocket.errored?.message}`);
  assert.equal(state.goaway, undefined);
  assert.deepEqual(state.resets, []);
  assert.equal(reply(5).pid, process.pid);
});

test('a relayed connection whose uid is paused is not read when grpc-js reads the relay again, until the uid is resumed', async (t) => {
  const { state, reply, done, uds, agentSocket, relay } = await relayHeldBack(t);
  uds.pauseReading(process.getuid!());
  relay.resume();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(agentSocket.isPaused(), true, 'the relay read a paused uid\'s connection');
  uds.resumeReading(process.getuid!());
  await done(3);
  await done(5);
  assert.equal(agentSocket.destroyed, false);
  assert.deepEqual(state.resets, []);
  assert.equal(reply(5).pid, process.pid);
});

const CLIENT_SCRIPT = `
import { createRequire } from 'node:module';
const [packageRoot, socketPath, calls] = process.argv.slice(2);
const grpc = createRequire(packageRoot + '/package.json')('@grpc/grpc-js');
const ser = (v) => Buffer.from(JSON.stringify(v));
const de = (b) => JSON.parse(b.toString('utf8'));
const S = '${SERVICE}';
const client = new grpc.Client('unix:' + socketPath, grpc.credentials.createInsecure());
const unary = () => new Promise((res, rej) => client.makeUnaryRequest(S + '/Who', ser, de, {}, (e, v) => (e ? rej(e) : res(v))));
const stream = () => new Promise((res, rej) => {
  const out = [];
  const call = client.makeServerStreamRequest(S + '/Stream', ser, de, { count: 20 });
  call.on('data', (v) => out.push(v)); call.on('error', rej); call.on('end', () => res(out));
});
const chat = () => new Promise((res, rej) => {
  const out = [];
  const call = client.makeBidiStreamRequest(S + '/Chat', ser, de);
  call.on('data', (v) => out.push(v)); call.on('error', rej); call.on('end', () => res(out));
  for (let i = 0; i < 10; i++) call.write({});
  call.end();
});
const replies = [];
const work = [];
for (let i = 0; i < Number(calls); i++) work.push(unary().then((r) => replies.push(r)));
work.push(stream().then((rs) => replies.push(...rs)), chat().then((rs) => replies.push(...rs)));
await Promise.all(work);
client.close();
process.stdout.write(JSON.stringify({ pid: process.pid, uid: process.getuid(), gid: process.getgid(), replies }));
`;

async function runClient(script: string, socketPath: string, ids: { uid: number; gid: number }): Promise<{ pid: number; uid: number; gid: number; replies: Reply[] }> {
  const child = spawn(process.execPath, [script, packageRoot, socketPath, '50'], { ...ids, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, `client failed: ${err}`);
  return JSON.parse(out);
}

test('concurrent client processes of two uids each see only their own credentials on unary, server and bidi streams', async (t) => {
  const { dir, socketPath } = await startUds(t);
  const script = path.join(dir, 'client.mjs');
  fs.writeFileSync(script, CLIENT_SCRIPT);
  fs.chmodSync(script, 0o644);
  const ids = [{ uid: 0, gid: 0 }, { uid: 65534, gid: 65534 }, { uid: 0, gid: 0 }, { uid: 65534, gid: 65534 }];
  const results = await Promise.all(ids.map((id) => runClient(script, socketPath, id)));
  const peerKeys = new Set<string>();
  for (const [i, r] of results.entries()) {
    assert.deepEqual({ uid: r.uid, gid: r.gid }, ids[i]);
    assert.equal(r.replies.length, 50 + 20 + 10);
    for (const reply of r.replies) {
      assert.deepEqual({ pid: reply.pid, uid: reply.uid, gid: reply.gid }, { pid: r.pid, uid: r.uid, gid: r.gid });
      assert.ok(reply.selectors.includes(`unix:uid:${r.uid}`), `selectors of ${r.pid}: ${reply.selectors.join(' ')}`);
      peerKeys.add(reply.peer);
    }
    // One connection per client process.
    assert.equal(new Set(r.replies.map((x) => x.peer)).size, 1);
  }
  assert.equal(peerKeys.size, ids.length);
});

test('the socket is mode 0777 so any uid can connect; authorization is left to attestation', async (t) => {
  const { socketPath } = await startUds(t);
  const stat = fs.statSync(socketPath);
  assert.ok(stat.isSocket());
  assert.equal(stat.mode & 0o777, 0o777);
});

test('a peer entry lives exactly as long as its connection, and its pidfd is released', async (t) => {
  const { socketPath, uds } = await startUds(t);
  const client = newClient(socketPath);
  const { peer } = await who(client);
  const info = uds.peerOf(peer) as PeerInfo;
  assert.ok(info.pidfd >= 0);
  assert.equal(info.closed, false);
  const pidfd = info.pidfd;
  assert.match(fs.readlinkSync(`/proc/self/fd/${pidfd}`), /pidfd/);
  client.close();
  // Wait for the server side to see the close (an event, not a timer).
  for (let i = 0; uds.peerOf(peer) !== undefined; i++) {
    assert.ok(i < 5000, 'the connection closed');
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(info.closed, true);
  assert.equal(info.pidfd, -1);
  const now = (() => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${pidfd}`);
    } catch {
      return 'closed';
    }
  })();
  assert.ok(!/^anon_inode:\[pidfd\]$/.test(now) || now === 'closed', `fd ${pidfd} is no longer the pidfd (${now})`);
  assert.throws(() => new UnixWorkloadAttestor().attest(info), (err) => err instanceof MeshidError && err.code === 'unavailable');
});

test('a uid holding its most connections has new ones closed at accept, until one of its own closes', async (t) => {
  const { socketPath, uds } = await startUds(t, 'agent.sock', 2);
  const until = async (what: string, ok: () => boolean): Promise<void> => {
    for (let i = 0; !ok(); i++) {
      assert.ok(i < 5000, what);
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  await until('the self-test connection to close', () => uds.openConnections() === 0);
  // Idle connections that never send a byte: what a flood of them looks like.
  const idle = [net.connect(socketPath), net.connect(socketPath)];
  await until('both idle connections to be accepted', () => uds.openConnections() === 2);
  const refused = newClient(socketPath);
  await assert.rejects(who(refused), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);
  refused.close();
  assert.equal(uds.openConnections(), 2);
  idle[0]!.destroy();
  await until('the closed one to be released', () => uds.openConnections() === 1);
  const client = newClient(socketPath);
  assert.equal((await who(client)).pid, process.pid);
  client.close();
  idle[1]!.destroy();
});

/** A socket file whose listener died without unlinking it: a child listens, then is SIGKILLed. */
async function staleSocket(socketPath: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await once(child.stdout!, 'data');
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.ok(fs.lstatSync(socketPath).isSocket(), 'the stale socket file is left behind');
}

test('a stale socket file is replaced at start; close() removes the socket file', async (t) => {
  const dir = publicTempDir('meshid-uds-');
  const socketPath = path.join(dir, 'agent.sock');
  const server = new grpc.Server();
  const uds = new UdsServer({ socketPath, grpcServer: server, log: silentLogger() });
  const client = newClient(socketPath);
  teardown(t).after(async () => {
    client.close();
    server.forceShutdown();
    await uds.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await staleSocket(socketPath);
  await assert.rejects(new Promise((_, reject) => net.connect(socketPath).on('error', reject)), { code: 'ECONNREFUSED' });
  await uds.start();
  // The echo service is not registered here: reaching grpc-js at all is enough (UNIMPLEMENTED).
  await assert.rejects(who(client), { code: grpc.status.UNIMPLEMENTED });
  server.forceShutdown();
  await uds.close();
  assert.equal(fs.existsSync(socketPath), false);
});

test('start refuses a socket another process is serving, and a path that is not a socket, leaving both alone', async (t) => {
  const dir = publicTempDir('meshid-uds-');
  const live = net.createServer();
  teardown(t).after(async () => {
    await new Promise((r) => live.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const livePath = path.join(dir, 'live.sock');
  live.listen(livePath);
  await once(live, 'listening');
  const filePath = path.join(dir, 'data.txt');
  fs.writeFileSync(filePath, 'keep me');
  for (const [socketPath, reason] of [[livePath, /in use/], [filePath, /not a Unix socket/]] as const) {
    const server = new grpc.Server();
    const uds = new UdsServer({ socketPath, grpcServer: server, log: silentLogger() });
    await assert.rejects(uds.start(), (err) => err instanceof MeshidError && err.code === 'failed_precondition' && reason.test(err.message));
    server.forceShutdown();
  }
  assert.ok(fs.lstatSync(livePath).isSocket());
  assert.equal(fs.readFileSync(filePath, 'utf8'), 'keep me');
  // The live server still answers.
  const probe = net.connect(livePath);
  await once(probe, 'connect');
  probe.destroy();
});

test('a retired connection still delivers its failed call\'s status, however late, and the next call goes on a new connection', async (t) => {
  const { socketPath, uds } = await startUds(t);
  const client = newClient(socketPath);
  teardown(t).after(() => client.close());
  const first = await who(client);
  const refused = await new Promise<grpc.ServiceError>((resolve, reject) =>
    client.makeUnaryRequest(`${SERVICE}/Retired`, json.serialize, json.deserialize, { delayMs: 400 }, (err) =>
      err ? resolve(err) : reject(new Error('the retired call succeeded')),
    ),
  );
  assert.equal(refused.code, grpc.status.UNAVAILABLE, refused.message);
  assert.equal(refused.details, 'the caller changed its uid', 'the status sent, not a dropped connection');
  const next = await who(client);
  assert.notEqual(next.peer, first.peer, 'a new connection');
  // The retired connection closed once its call had ended, well before the grace that cuts off calls still open.
  const deadline = Date.now() + 3000;
  while (uds.peerOf(first.peer) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(uds.peerOf(first.peer), undefined);
});

test('a connection retired while its session is already closing (the client sent a GOAWAY) still delivers the failed call\'s status', async (t) => {
  const { socketPath, uds } = await startUds(t);
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  teardown(t).after(() => session.destroy());
  const call = session.request({ ':method': 'POST', ':path': `${SERVICE}/RetiredOnMessage`, 'content-type': 'application/grpc', te: 'trailers' });
  const message = (value: unknown): Buffer => {
    const body = Buffer.from(JSON.stringify(value));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    return frame;
  };
  // Answered: the server has the stream.
  call.write(message({}));
  await once(call, 'data');
  // The client's GOAWAY reaches the server before the next message: its session is closed (gracefully, the stream
  // goes on) when the handler retires the connection.
  session.close();
  call.end(message({ delayMs: 400 }));
  call.resume();
  const trailers = await new Promise<http2.IncomingHttpHeaders | undefined>((resolve) => {
    call.once('trailers', (headers: http2.IncomingHttpHeaders) => resolve(headers));
    call.once('close', () => resolve(undefined));
  });
  assert.deepEqual(
    trailers && { status: trailers['grpc-status'], message: decodeURIComponent(String(trailers['grpc-message'])) },
    { status: String(grpc.status.UNAVAILABLE), message: 'the caller changed its uid' },
    'the status sent, not a dropped connection',
  );
  const deadline = Date.now() + 3000;
  while (uds.openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(uds.openConnections(), 0, 'the connection closed once its call had ended');
});

test('close() cuts connections still open and resolves', async (t) => {
  const { socketPath, uds } = await startUds(t);
  const raw = net.connect(socketPath);
  await once(raw, 'connect');
  // Reading is what lets the client see the server's end of the connection.
  raw.resume();
  const closed = once(raw, 'close');
  // No gRPC shutdown first: close() alone must end the connection.
  await uds.close();
  await closed;
  assert.equal(fs.existsSync(socketPath), false);
});

test('start fails loudly when the self-test does not see our own pid, and leaves no socket behind', async (t) => {
  const dir = publicTempDir('meshid-uds-');
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'agent.sock');
  const real = peerCredentials();
  // Credentials that name another process: what a broken peer lookup would produce.
  const wrong = { ...real, peerCred: (fd: number) => ({ ...real.peerCred(fd), pid: 1 }) };
  const server = new grpc.Server();
  const uds = new UdsServer({ socketPath, grpcServer: server, log: silentLogger(), credentials: wrong });
  await assert.rejects(uds.start(), (err) => err instanceof MeshidError && err.code === 'internal' && /self-test failed: our own connection was not recognised/.test(err.message));
  server.forceShutdown();
  assert.equal(fs.existsSync(socketPath), false);
});

test('start fails loudly when grpc-js\'s connection info names another connection than getPeer() (grpc-js patched to differ)', async (t) => {
  const dir = publicTempDir('meshid-uds-');
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'agent.sock');
  // What a changed grpc-js could do: the interceptors' source of the connection key (peerOfCall) and the handlers'
  // disagree, and the call limit and fair queue would take every uid for one unknown uid.
  const prototype = BaseServerInterceptingCall.prototype as { getConnectionInfo(): ConnectionInfo };
  const real = prototype.getConnectionInfo;
  prototype.getConnectionInfo = function (this: unknown) {
    return { ...real.call(this), remoteAddress: undefined };
  };
  teardown(t).after(() => {
    prototype.getConnectionInfo = real;
  });
  const server = new grpc.Server();
  const uds = new UdsServer({ socketPath, grpcServer: server, log: silentLogger() });
  // Also when start() succeeds (a self-test that misses the difference): nothing may be left listening.
  teardown(t).after(async () => {
    server.forceShutdown();
    await uds.close();
  });
  await assert.rejects(uds.start(), (err) => {
    assert.ok(err instanceof MeshidError && err.code === 'internal', String(err));
    assert.match(err.message, /^Unix socket self-test failed: grpc-js reported call\.getConnectionInfo\(\)\.remoteAddress = "unknown" but call\.getPeer\(\) = "uds-peer#\d+"; this grpc-js version breaks the per-uid call limit and fair queue$/);
    return true;
  });
  assert.equal(fs.existsSync(socketPath), false);
});

test('start fails loudly, naming the grpc-js version, when the first interceptor gets no call with an HTTP/2 stream, which the per-uid call limit needs (grpc-js stubbed: an interceptor wrapped ahead of the first, as a renamed "stream" field would look)', async (t) => {
  const dir = publicTempDir('meshid-uds-');
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'agent.sock');
  // grpc-js builds every call's interceptor chain here (server.js reads the export at each call): a pass-through
  // interceptor put first hands the real first one a wrapper, which has no `stream` field, as a grpc-js that renamed
  // the field would hand it its own call.
  const interceptors = serverInterceptorsModule as unknown as { getServerInterceptingCall: (list: grpc.ServerInterceptor[], ...rest: unknown[]) => unknown };
  const real = interceptors.getServerInterceptingCall;
  const wrapped: grpc.ServerInterceptor = (_method, call) => new grpc.ServerInterceptingCall(call);
  interceptors.getServerInterceptingCall = (list, ...rest) => real([wrapped, ...list], ...rest);
  teardown(t).after(() => {
    interceptors.getServerInterceptingCall = real;
  });
  const server = new grpc.Server();
  const uds = new UdsServer({ socketPath, grpcServer: server, log: silentLogger() });
  teardown(t).after(async () => {
    server.forceShutdown();
    await uds.close();
  });
  const version = (JSON.parse(fs.readFileSync(path.join(packageRoot, 'node_modules/@grpc/grpc-js/package.json'), 'utf8')) as { version: string }).version;
  await assert.rejects(uds.start(), (err) => {
    assert.ok(err instanceof MeshidError && err.code === 'internal', String(err));
    assert.equal(
      err.message,
      `Unix socket self-test failed: the installed @grpc/grpc-js (version ${version}) no longer gives a server interceptor its call's HTTP/2 stream ` +
        '(the private field "stream"), by which the agent counts and resets each uid\'s calls (max_calls_per_uid): without it one local process ' +
        "could hold the agent's memory with open calls. Install the dependency versions meshid was released with: npm ci (it follows " +
        'package-lock.json), not npm install or npm update',
    );
    return true;
  });
  assert.equal(fs.existsSync(socketPath), false);
});

/**
 * A self-test server (grpc-js, connections injected from a plain net listener) on a socket in a temp dir, answering
 * peer look-ups with `peer`; stopped and removed after the test. Returns the socket's path.
 */
async function selfTestServerOn(t: TestContext, peer: Parameters<typeof createSelfTestServer>[0]): Promise<string> {
  const dir = publicTempDir('meshid-uds-');
  const socketPath = path.join(dir, 'plain.sock');
  const selfTest = createSelfTestServer(peer);
  const injector = selfTest.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = net.createServer((socket) => injector.injectConnection(socket));
  listener.listen(socketPath);
  await once(listener, 'listening');
  teardown(t).after(async () => {
    selfTest.forceShutdown();
    await new Promise((r) => listener.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return socketPath;
}

test('the self-test rejects a grpc-js that does not report the socket remoteAddress through getPeer()', async (t) => {
  // What a changed grpc-js would look like: connections reach the handler but getPeer() is not our key.
  const socketPath = await selfTestServerOn(t, () => ({ pid: process.pid, uid: 0, gid: 0, pidfd: -1, closed: false }));
  await assert.rejects(runSelfTest(socketPath, /^uds-peer#\d+$/), (err) => err instanceof MeshidError && /getPeer\(\) = "unknown"/.test(err.message));
  // Control: the same wiring with the expected pattern passes.
  await runSelfTest(socketPath, /^unknown$/);
});

test('a connection dropped because its pidfd cannot be opened gives its place under max_connections_per_uid back', async (t) => {
  const real = peerCredentials();
  let failPidfd = false;
  // pidfd_open fails for a peer that exited between connect and accept, or when the agent is out of descriptors.
  const flaky = {
    ...real,
    peerPidfd: (fd: number) => {
      if (failPidfd) throw new Error('pidfd_open: EMFILE (stubbed)');
      return real.peerPidfd(fd);
    },
  };
  const { uds, socketPath } = await startUds(t, 'agent.sock', 2, flaky);
  await until('the self-test connection to close', () => (uds.openConnections() === 0 ? true : undefined));
  failPidfd = true;
  for (let i = 0; i < 3; i++) {
    const dropped = net.connect(socketPath);
    dropped.on('error', () => undefined);
    await once(dropped, 'close');
  }
  assert.equal(uds.openConnections(), 0);
  failPidfd = false;
  // Had each dropped connection kept its count, the uid would be at its cap of 2 with nothing open.
  const client = newClient(socketPath);
  t.after(() => client.close());
  assert.equal((await who(client)).pid, process.pid);
  assert.equal(uds.openConnections(), 1);
});

test('a peer whose pid the agent cannot see (pid 0: another pid namespace) keeps its connection, no pidfd asked for, which attestation then refuses with its own reason', async (t) => {
  const real = peerCredentials();
  let hidePid = false;
  const pidfdsAsked: number[] = [];
  const namespaced = {
    ...real,
    peerCred: (fd: number) => (hidePid ? { ...real.peerCred(fd), pid: 0 } : real.peerCred(fd)),
    peerPidfd: (fd: number) => {
      if (hidePid) {
        pidfdsAsked.push(fd);
        // What pidfd_open(0) answers.
        throw new Error('pidfd_open: EINVAL (stubbed)');
      }
      return real.peerPidfd(fd);
    },
  };
  const { uds, socketPath } = await startUds(t, 'agent.sock', undefined, namespaced);
  await until('the self-test connection to close', () => (uds.openConnections() === 0 ? true : undefined));
  hidePid = true;
  const raw = net.connect(socketPath);
  raw.on('error', () => undefined);
  t.after(() => raw.destroy());
  let closed = false;
  raw.on('close', () => (closed = true));
  await until('the connection to be accepted', () => (uds.openConnections() === 1 || closed ? true : undefined));
  assert.equal(closed, false, 'the connection was dropped at accept');
  assert.equal(uds.openConnections(), 1);
  assert.deepEqual(pidfdsAsked, [], 'no pidfd is asked for a pid the agent cannot see');
});

test('the self-test rejects a peer table that names another process for our own connection', async (t) => {
  // getPeer() is the key, but what the table holds for it is not this process: a lookup mixing up connections.
  const other = process.pid + 1;
  const socketPath = await selfTestServerOn(t, () => ({ pid: other, uid: 0, gid: 0, pidfd: -1, closed: false }));
  await assert.rejects(runSelfTest(socketPath, /^unknown$/), (err) => {
    assert.ok(err instanceof MeshidError && err.code === 'internal', String(err));
    assert.equal(err.message, `Unix socket self-test failed: our own connection was seen as pid ${other}, expected ${process.pid}`);
    return true;
  });
});
