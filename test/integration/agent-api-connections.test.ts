/**
 * What connections to the agent API may hold (agent-api-connections.ts), shown with raw node:http2 TLS clients: one
 * without an agent SVID gets a stream limit of its own and counts against bounds per source address and in total
 * (beyond them it is closed with a GOAWAY saying why), and is closed once idle or too old; an agent's connections
 * count against that agent's bound only, and its Sync stream outlives the cert-less connections' ages. When the bound
 * in total is full, a source holding fewer than the heaviest takes the place of that one's oldest. A real agent
 * keeps attesting and syncing through it all. Loopback addresses other than 127.0.0.1 stand in for other hosts. The
 * bounds are lowered for the test (MeshidServer's agentApiConnectionLimits) so they are reached with a few
 * connections. The idle, age and grace timers are transport timers on the system's timers, not the server's clock:
 * one server's are long, so none frees a place while a test fills a bound on a loaded machine (and hours of its clock
 * moved cut nothing); another's are a fraction of a second, for the tests that wait for them. In-process servers on a
 * FakeClock hours behind real time (OpenSSL judges certificates by real time).
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import tls from 'node:tls';
import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { exportPkcs8Pem } from '../../src/common/x509/keys.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import type { AgentIdentity as HeldIdentity } from '../../src/agent/client/agent-identity.js';
import type { ConnectionLimits } from '../../src/server/api/agent-api-connections.js';
import type { MeshidServer } from '../../src/server/server.js';
import type { Cluster } from '../support/cluster.js';
import { startServerWithLimits } from '../support/limited-server.js';
import { event } from '../support/event.js';
import { until } from '../support/until.js';
import { advanceUntil } from '../support/advance-until.js';

/** Far enough behind real time that the hours one test moves it leave it behind still. */
const clock = new FakeClock(Date.now() - 12 * 3_600_000);
const LIMITS: Partial<ConnectionLimits> = {
  unauthenticatedPerSource: 3,
  unauthenticatedTotal: 5,
  unauthenticatedStreams: 2,
  unauthenticatedIdleMs: 600_000,
  unauthenticatedMaxAgeMs: 600_000,
  unauthenticatedGraceMs: 10_000,
  evictedGraceMs: 2_000,
  perAgent: 2,
};
/** The timers short enough to wait for; long enough for a call opened with the connection to reach the server first. */
const TIMER_LIMITS: Partial<ConnectionLimits> = {
  ...LIMITS,
  unauthenticatedIdleMs: 500,
  unauthenticatedMaxAgeMs: 2_000,
  unauthenticatedGraceMs: 500,
};
let cluster: Cluster;
let server: MeshidServer;
let timed: { cluster: Cluster; server: MeshidServer };

interface RawConnection {
  session: http2.ClientHttp2Session;
  /** Resolves with the GOAWAY's code and reason when the server sends one. */
  goaway: Promise<{ code: number; reason: string }>;
  closed: Promise<void>;
}

/** A raw TLS HTTP/2 connection from `localAddress` to `to`, with `identity` as client certificate when given. */
function connectRaw(localAddress: string, identity?: { chain: readonly Buffer[]; key: KeyObject }, to: MeshidServer = server): RawConnection {
  // localAddress goes on to the socket (net.connect); @types/node leaves it out of the HTTP/2 options.
  const options = {
    rejectUnauthorized: false,
    servername: 'meshid-server',
    localAddress,
    ...(identity && { cert: certificatesToPem(identity.chain), key: exportPkcs8Pem(identity.key) }),
  } as http2.SecureClientSessionOptions;
  const session = http2.connect(`https://127.0.0.1:${to.agentPort}`, options);
  session.on('error', () => {});
  return {
    session,
    goaway: new Promise((resolve) => session.once('goaway', (code, _last, data) => resolve({ code, reason: data?.toString() ?? '' }))),
    closed: new Promise((resolve) => session.once('close', resolve)),
  };
}

/** Waits until the server has judged the connection as one without an agent SVID: its stream limit drops to theirs. */
async function judgedUnauthenticated(c: RawConnection): Promise<void> {
  if (c.session.remoteSettings?.maxConcurrentStreams === LIMITS.unauthenticatedStreams) return;
  await event(
    'the stream limit of a connection without an agent SVID',
    new Promise<void>((resolve) =>
      c.session.on('remoteSettings', (s) => {
        if (s.maxConcurrentStreams === LIMITS.unauthenticatedStreams) resolve();
      }),
    ),
  );
}

/** Connections without a client certificate from `source`, as many as the bound per source lets it hold; closed after the test. */
async function fillPerSourceBound(t: TestContext, source: string): Promise<RawConnection[]> {
  const held: RawConnection[] = [];
  t.after(() => held.forEach((c) => c.session.destroy()));
  for (let i = 0; i < LIMITS.unauthenticatedPerSource!; i++) {
    const c = connectRaw(source);
    held.push(c);
    await judgedUnauthenticated(c);
  }
  return held;
}

/** A call that sends its headers and never its request (Attest by default: it waits for the request). */
function idleCall(c: RawConnection, method = 'Attest'): http2.ClientHttp2Stream {
  const stream = c.session.request(
    { ':method': 'POST', ':path': `/meshid.agent.v1.Node/${method}`, 'content-type': 'application/grpc', te: 'trailers' },
    { endStream: false },
  );
  stream.on('error', () => {});
  return stream;
}

async function startAgent(name: string, to: Cluster = cluster): Promise<MeshidAgent> {
  const agent = await to.startInProcessAgent(
    { join_token: await to.token(), socket_path: path.join(to.dir, `${name}.sock`), data_dir: path.join(to.dir, `${name}-data`) },
    { clock, random: () => 0.5 },
  );
  await until(`${name}'s first sync`, () => (agent.status().state === 'synced' ? true : undefined));
  return agent;
}

/** The answer to `call` once its request is ended: its status comes in trailers, or in the headers of a trailers-only answer. */
function answerOf(call: http2.ClientHttp2Stream): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve) => {
    call.once('trailers', resolve);
    call.once('response', (headers) => headers['grpc-status'] !== undefined && resolve(headers));
  });
}

before(async () => {
  ({ cluster, server } = await startServerWithLimits('meshid-agent-api-connections-', clock, LIMITS));
  timed = await startServerWithLimits('meshid-agent-api-connection-timers-', clock, TIMER_LIMITS);
});

after(async () => {
  await cluster?.cleanup();
  await timed?.cluster.cleanup();
});

test('connections without a client certificate beyond the bound per source address, then in total from a source holding nearly as many as any, are closed with a GOAWAY saying why, while a real agent attests and syncs', async (t) => {
  const held: RawConnection[] = [];
  t.after(() => held.forEach((c) => c.session.destroy()));
  for (let i = 0; i < 3; i++) {
    const c = connectRaw('127.0.0.2');
    held.push(c);
    await judgedUnauthenticated(c);
    idleCall(c);
  }
  const overSource = connectRaw('127.0.0.2');
  held.push(overSource);
  const refusedSource = await event('the GOAWAY over the bound per source', overSource.goaway);
  assert.equal(refusedSource.code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.equal(refusedSource.reason, '127.0.0.2 holds as many connections without an agent SVID as it may; retry later');
  await event('the connection over the bound per source to close', overSource.closed);

  for (const source of ['127.0.0.3', '127.0.0.3']) {
    const c = connectRaw(source);
    held.push(c);
    await judgedUnauthenticated(c);
  }
  // 127.0.0.3 holds 2 and 127.0.0.2 the most, 3: taking one of those would only swap the two.
  const overTotal = connectRaw('127.0.0.3');
  held.push(overTotal);
  const refusedTotal = await event('the GOAWAY over the bound in total', overTotal.goaway);
  assert.equal(refusedTotal.code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.equal(refusedTotal.reason, 'the server holds as many connections without an agent SVID as it takes; retry later');

  // The bound in total is reached, yet an agent that has attested reconnects: its connections are not counted.
  // Closing the cert-less ones first lets a new agent attest (its Attest is one such connection).
  held.forEach((c) => c.session.destroy());
  await until('the cert-less connections to be gone', () => (server.agentApiConnections.unauthenticatedConnections === 0 ? true : undefined));
  const agent = await startAgent('agent-a');
  const filler = [connectRaw('127.0.0.5'), connectRaw('127.0.0.5'), connectRaw('127.0.0.5'), connectRaw('127.0.0.6'), connectRaw('127.0.0.6')];
  held.push(...filler);
  await Promise.all(filler.map(judgedUnauthenticated));
  await agent.stop();
  const again = await cluster.startInProcessAgent(
    { socket_path: path.join(cluster.dir, 'agent-a.sock'), data_dir: path.join(cluster.dir, 'agent-a-data') },
    { clock, random: () => 0.5 },
  );
  await until('the agent to sync again with its SVID while the cert-less bound is full', () => (again.status().state === 'synced' ? true : undefined));
});

test("when the bound in total is full, a connection from a source holding fewer than the heaviest takes the place of that one's oldest, which is closed with a GOAWAY saying why", async (t) => {
  // One client on two addresses (3 + 2) fills the bound in total, as one on 8 would fill 8 × 128.
  const hoarder: RawConnection[] = [];
  const calls: http2.ClientHttp2Stream[] = [];
  t.after(() => hoarder.forEach((c) => c.session.destroy()));
  for (const source of ['127.0.0.11', '127.0.0.11', '127.0.0.11', '127.0.0.12', '127.0.0.12']) {
    const c = connectRaw(source);
    hoarder.push(c);
    await judgedUnauthenticated(c);
    // Kept busy, as a hoarder would keep them, so no idle timer frees a place.
    calls.push(idleCall(c));
  }
  assert.equal(server.agentApiConnections.unauthenticatedConnections, LIMITS.unauthenticatedTotal);
  const newcomer = connectRaw('127.0.0.13');
  t.after(() => newcomer.session.destroy());
  const evicted = await event("the GOAWAY of the heaviest source's oldest connection", hoarder[0]!.goaway);
  assert.equal(evicted.code, http2.constants.NGHTTP2_NO_ERROR, 'graceful: its calls in progress still get their answers');
  assert.equal(
    evicted.reason,
    "the server holds as many connections without an agent SVID as it takes, and 127.0.0.11 the most of them; this, its oldest, was closed for another source's",
  );
  // Its Attest, as an agent's in progress would be, gets its answer (here a refusal of an empty request): cut at
  // once, an answer written in the same turn as the eviction could be lost after the join token was spent.
  const answer = answerOf(calls[0]!);
  calls[0]!.end(Buffer.alloc(5));
  assert.notEqual((await event('the answer to the evicted connection\'s call in progress', answer))['grpc-status'], undefined);
  await event('the evicted connection to be cut after its grace', hoarder[0]!.closed);
  await judgedUnauthenticated(newcomer);
  assert.equal(server.agentApiConnections.unauthenticatedConnections, LIMITS.unauthenticatedTotal);
  // The newcomer is in and usable: a call on it is answered (refused: no certificate).
  const call = idleCall(newcomer, 'Sync');
  await event('the answer to a call on the newcomer', new Promise((resolve) => call.once('response', resolve)));
  assert.equal(newcomer.session.closed, false);
  assert.equal(hoarder[1]!.session.closed, false);
  [...hoarder, newcomer].forEach((c) => c.session.destroy());
  await until('the places to be given back', () => (server.agentApiConnections.unauthenticatedConnections === 0 ? true : undefined));
});

test('a connection without a client certificate gets a stream limit of its own, and is closed once idle, or at its age with a call that never sends its request, on real time with the server\'s clock standing still', async (t) => {
  const idle = connectRaw('127.0.0.7', undefined, timed.server);
  const stuck = connectRaw('127.0.0.7', undefined, timed.server);
  // Opened with the connection, so it reaches the server before the idle timer could close it.
  // Refused at once (no certificate), but the call stays open on the server for as long as the client does not end it.
  const call = idleCall(stuck, 'Sync');
  t.after(() => [idle, stuck].forEach((c) => c.session.destroy()));
  await judgedUnauthenticated(stuck);
  assert.equal(stuck.session.remoteSettings.maxConcurrentStreams, 2);
  await event('the refusal of the call', new Promise((resolve) => call.once('response', resolve)));
  await event('the idle connection to close', idle.closed);
  // The call's request never comes: at the connection's age it takes no new call, and after the grace it is cut.
  assert.equal((await event('the GOAWAY at the age', stuck.goaway)).code, http2.constants.NGHTTP2_NO_ERROR);
  await event('the cut after the grace', stuck.closed);
});

test("hours of the server's clock moved while an Attest is in progress on a connection without a client certificate do not cut it: its timers are the transport's", async (t) => {
  const c = connectRaw('127.0.0.14');
  t.after(() => c.session.destroy());
  const attest = idleCall(c);
  await judgedUnauthenticated(c);
  // Past the connection's idle, age and grace many times over, as a test's simulated hours or a host's clock stepped forward.
  clock.advance(6 * 3_600_000);
  // A round trip on another connection later, the Attest is still open and gets its answer once its request is in.
  const probe = connectRaw('127.0.0.15');
  t.after(() => probe.session.destroy());
  await judgedUnauthenticated(probe);
  const answer = answerOf(attest);
  attest.end(Buffer.alloc(5));
  assert.notEqual((await event('the answer to the Attest in progress', answer))['grpc-status'], undefined);
  assert.equal(c.session.closed, false);
});

test("connections with one agent's SVID beyond its bound close its oldest; an agent's Sync stream outlives the cert-less connections' age", async (t) => {
  const agent = await startAgent('agent-b');
  const identity = (agent as unknown as { identity: HeldIdentity }).identity.current()!;
  // The agent's key, as a thief of it has it: the agent stops, so only these connections present its SVID.
  await agent.stop();
  const own = { chain: identity.chain, key: identity.privateKey };
  const raw = [connectRaw('127.0.0.8', own), connectRaw('127.0.0.8', own)];
  t.after(() => raw.forEach((c) => c.session.destroy()));
  await Promise.all(raw.map((c) => new Promise((resolve) => c.session.once('remoteSettings', resolve))));
  // Agent SVID connections keep the stream limit of every connection.
  assert.equal(raw[0]!.session.remoteSettings.maxConcurrentStreams, 100);
  raw.push(connectRaw('127.0.0.8', own));
  const refused = await event('the GOAWAY of the oldest connection', raw[0]!.goaway);
  assert.equal(refused.code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.equal(refused.reason, `agent ${identity.spiffeId} opened more than 2 connections; this, its oldest, was closed`);
  await event('the oldest connection to close', raw[0]!.closed);

  // On the server whose timers are short: a cert-less connection opened after the agent's stream, with a call that
  // never sends its request, is cut at its age and grace; the agent's older stream is not.
  const synced = await startAgent('agent-c', timed.cluster);
  t.after(() => synced.stop());
  const streamOf = (): unknown => (synced as unknown as { connection: { current: unknown } }).connection.current;
  const stream = streamOf();
  const probe = connectRaw('127.0.0.9', undefined, timed.server);
  t.after(() => probe.session.destroy());
  idleCall(probe);
  await event('the cert-less connection to be cut at its age and grace', probe.closed);
  assert.equal(synced.status().state, 'synced');
  assert.equal(streamOf(), stream);
});

test('a connection without a client certificate whose peer never closes its side is cut once the grace is over, freeing its place', async (t) => {
  // A raw TLS peer that speaks HTTP/2's preface and then ignores the server's GOAWAY and FIN (half-open: it never
  // closes its side). Node's graceful close waits for that side; such a peer would hold its place for good.
  const socket = tls.connect({
    host: '127.0.0.1',
    port: timed.server.agentPort,
    localAddress: '127.0.0.10',
    rejectUnauthorized: false,
    servername: 'meshid-server',
    ALPNProtocols: ['h2'],
    allowHalfOpen: true,
  } as tls.ConnectionOptions);
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  // Reads what the server sends (its 'end' comes only once the bytes before it are read), and never answers it.
  socket.resume();
  const serverEnded = new Promise((resolve) => socket.once('end', resolve));
  await event('the TLS handshake', new Promise((resolve) => socket.once('secureConnect', resolve)));
  const emptySettings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), emptySettings]));
  // The server closes its side once idle (having counted the connection), and it would then stay counted for as long
  // as the peer keeps its side open, were it not cut at the grace's end.
  await event('the server to close its side once idle', serverEnded);
  await until('the connection to be cut and its place freed', () => (timed.server.agentApiConnections.unauthenticatedConnections === 0 ? true : undefined));
});

test('an agent whose attestation connection a bound closes says so in its own words, not grpc-js\'s "Bandwidth exhausted", and attests once a place is free', async (t) => {
  const held = await fillPerSourceBound(t, '127.0.0.1');
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, 'agent-bound.sock'), data_dir: path.join(cluster.dir, 'agent-bound-data') },
    { clock, random: () => 0.5 },
  );
  t.after(() => agent.stop());
  const seen = await until('the refusal in the agent status', () => agent.status().lastError);
  assert.match(seen, /^meshid-server at 127\.0\.0\.1:\d+ closed the connection of Attest \(HTTP\/2 ENHANCE_YOUR_CALM\): it holds as many connections as one of its bounds allows/);
  assert.doesNotMatch(seen, /Bandwidth exhausted/);
  held.forEach((c) => c.session.destroy());
  await advanceUntil(clock, () => agent.status().state === 'synced');
  assert.equal(agent.status().state, 'synced', 'attested at its next try once the places are free');
});

test("an agent whose first Attest connection a bound closes does not probe the server's trust with another TLS connection: the GOAWAY came over a channel its roots authenticated", async (t) => {
  await fillPerSourceBound(t, '127.0.0.1');
  // The TCP connections the server accepts from now on, each a TLS handshake it serves (its HTTP/2 listener, an
  // internal of grpc-js as in agent-api-connections.ts): the agent's Attest, and before the fix its trust probe too.
  const listeners = (server as unknown as { agentApi: { http2Servers: Map<tls.Server, unknown> } }).agentApi.http2Servers;
  let accepted = 0;
  const count = (): void => void accepted++;
  for (const listener of listeners.keys()) listener.on('connection', count);
  t.after(() => [...listeners.keys()].forEach((l) => l.off('connection', count)));
  // A first attestation with the bootstrap roots of --trust-bundle (the cluster's bundle file), no bundle held yet.
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, 'agent-probe.sock'), data_dir: path.join(cluster.dir, 'agent-probe-data') },
    { clock, random: () => 0.5 },
  );
  t.after(() => agent.stop());
  // Set once the failure is handled, after the probe (if any) has finished; the retry waits on the FakeClock.
  const seen = await until('the refusal in the agent status', () => agent.status().lastError);
  assert.match(seen, /closed the connection of Attest \(HTTP\/2 ENHANCE_YOUR_CALM\)/);
  assert.equal(accepted, 1, 'one connection, the Attest itself');
  assert.equal(agent.status().state, 'attesting');
});
