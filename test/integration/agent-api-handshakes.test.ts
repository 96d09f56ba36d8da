/**
 * TCP connections to the agent API that have not finished their TLS handshake (agent-api-handshakes.ts), shown with
 * raw TCP clients that send nothing or the first bytes of a ClientHello: each is cut at its deadline, and when the
 * bound in total is full the oldest of the source holding the most gives way to a newcomer. A connection whose
 * handshake is done, a real agent's, is never cut by either. Loopback addresses other than 127.0.0.1 stand in for
 * other hosts. Two in-process servers with lowered bounds (MeshidServer's agentApiConnectionLimits): one whose
 * deadline is 1 s, as the deadline runs on the system's timers (a transport timeout), for the tests that wait for it;
 * one with the deadline of 10 s and room for 4 handshakes, so no deadline passes while the bound in total is tested on
 * a loaded machine; the last test stops a third. All on a FakeClock an hour behind real time (OpenSSL judges
 * certificates by real time).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import type { ConnectionLimits } from '../../src/server/api/agent-api-connections.js';
import { MeshidServer } from '../../src/server/server.js';
import type { Cluster } from '../support/cluster.js';
import { startServerWithLimits } from '../support/limited-server.js';
import { event } from '../support/event.js';
import { until } from '../support/until.js';

const clock = new FakeClock(Date.now() - 3_600_000);
const DEADLINE_LIMITS: Partial<ConnectionLimits> = { handshakeMs: 1_000 };
const BOUND_LIMITS: Partial<ConnectionLimits> = { handshakeMs: 10_000, handshakesTotal: 4 };
/** The first bytes of a TLS record holding a ClientHello, the rest of which never comes. */
const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

interface Started {
  cluster: Cluster;
  server: MeshidServer;
}
let deadlines: Started;
let bound: Started;
let agent: MeshidAgent;

interface RawSocket {
  socket: net.Socket;
  closed: Promise<void>;
}

/** A TCP connection from `localAddress` that never finishes a TLS handshake. */
async function openTcp(server: MeshidServer, localAddress: string, partialHello = false): Promise<RawSocket> {
  const socket = net.connect({ host: '127.0.0.1', port: server.agentPort, localAddress });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('connect', resolve));
  if (partialHello) socket.write(PARTIAL_CLIENT_HELLO);
  return { socket, closed };
}

/** openTcp, once the server counts it (while the bound in total has room). */
async function connectTcp(server: MeshidServer, localAddress: string, partialHello = false): Promise<RawSocket> {
  const before = server.agentApiConnections.handshakesInProgress;
  const c = await openTcp(server, localAddress, partialHello);
  await until('the server to count the handshake', () => (server.agentApiConnections.handshakesInProgress > before ? true : undefined));
  return c;
}

/** A TLS connection from `localAddress` whose handshake is done. */
async function connectTls(server: MeshidServer, localAddress: string): Promise<tls.TLSSocket> {
  // localAddress goes on to the socket (net.connect); @types/node leaves it out of the TLS options.
  const options = { host: '127.0.0.1', port: server.agentPort, localAddress, rejectUnauthorized: false, servername: 'meshid-server', ALPNProtocols: ['h2'] };
  const socket = tls.connect(options as tls.ConnectionOptions);
  socket.on('error', () => {});
  await event('a TLS handshake', new Promise((resolve) => socket.once('secureConnect', resolve)));
  return socket;
}

async function noHandshakeLeft(server: MeshidServer, what: string): Promise<void> {
  await until(what, () => (server.agentApiConnections.handshakesInProgress === 0 ? true : undefined));
}

function start(limits: Partial<ConnectionLimits>): Promise<Started> {
  return startServerWithLimits('meshid-agent-api-handshakes-', clock, limits);
}

function streamOf(a: MeshidAgent): unknown {
  return (a as unknown as { connection: { current: unknown } }).connection.current;
}

before(async () => {
  deadlines = await start(DEADLINE_LIMITS);
  bound = await start(BOUND_LIMITS);
  const { cluster } = deadlines;
  agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, random: () => 0.5 },
  );
  await until("the agent's first sync", () => (agent.status().state === 'synced' ? true : undefined));
});

after(async () => {
  await deadlines?.cluster.cleanup();
  await bound?.cluster.cleanup();
});

test('a TCP connection that does not finish its TLS handshake within the deadline is cut and stops counting; a real agent synced meanwhile keeps its stream', async (t) => {
  const { server } = deadlines;
  const stream = streamOf(agent);
  const silent = await openTcp(server, '127.0.0.2');
  const halfHello = await openTcp(server, '127.0.0.2', true);
  t.after(() => [silent, halfHello].forEach((c) => c.socket.destroy()));
  await event('the connections to be cut at their deadline', Promise.all([silent.closed, halfHello.closed]));
  await noHandshakeLeft(server, 'the handshakes to stop counting');
  assert.equal(agent.status().state, 'synced');
  assert.equal(streamOf(agent), stream);
});

test('a connection whose handshake is done, or that its client closed, stops counting; the first outlives its deadline', async (t) => {
  const { server } = deadlines;
  const gone = await connectTcp(server, '127.0.0.3');
  gone.socket.destroy();
  await noHandshakeLeft(server, 'the closed connection to stop counting');
  const handshaken = await connectTls(server, '127.0.0.3');
  t.after(() => handshaken.destroy());
  await noHandshakeLeft(server, 'the handshaken connection to stop counting');
  // One opened after it is cut at its deadline: the handshaken one's has passed too, and it is still open.
  const later = await openTcp(server, '127.0.0.3');
  await event('the later connection to be cut at its deadline', later.closed);
  assert.equal(handshaken.destroyed, false);
});

test("when the bound in total is full, the oldest handshake of the source holding the most gives way to a newcomer; from that source itself, to its own", async (t) => {
  const { server, cluster } = bound;
  // A connection whose handshake is done holds no place, and is never the one cut.
  const handshaken = await connectTls(server, '127.0.0.4');
  const held: RawSocket[] = [];
  t.after(() => [handshaken, ...held.map((c) => c.socket)].forEach((s) => s.destroy()));
  await noHandshakeLeft(server, 'no handshake left from before');
  // One client fills the bound from one address.
  for (let i = 0; i < BOUND_LIMITS.handshakesTotal!; i++) held.push(await connectTcp(server, '127.0.0.4'));
  const [oldest, second] = held as [RawSocket, RawSocket];

  // An agent's host elsewhere is not kept out: the hoarder's oldest handshake goes.
  const other = await openTcp(server, '127.0.0.5');
  held.push(other);
  await event("the hoarder's oldest to be cut", oldest.closed);
  await until('the newcomer to be counted in its place', () => (server.agentApiConnections.handshakesInProgress === BOUND_LIMITS.handshakesTotal ? true : undefined));

  // The hoarder (3) still holds the most, but taking from it would leave it below its own newcomer: its own oldest goes.
  const newest = await openTcp(server, '127.0.0.4');
  held.push(newest);
  await event("the hoarder's oldest left to be cut", second.closed);
  assert.equal(server.agentApiConnections.handshakesInProgress, BOUND_LIMITS.handshakesTotal);
  // A round trip through the server later (on its admin socket: a handshake would be a newcomer too), the newcomers,
  // the hoarder's others and the handshaken connection are still open.
  await cluster.token();
  for (const c of [other, newest, held[2]!, held[3]!]) assert.equal(c.socket.closed, false);
  assert.equal(handshaken.destroyed, false);
  held.forEach((c) => c.socket.destroy());
  await noHandshakeLeft(server, 'the places to be given back');
});

test('a stopping server cuts the connections still in their TLS handshake instead of leaving them to their deadline', async (t) => {
  // A server of its own, as it is stopped, with a deadline no test waits for: only the stop can cut the connection.
  const stopping = await start({ handshakeMs: 600_000 });
  let stopped = false;
  t.after(async () => {
    if (!stopped) await stopping.cluster.cleanup();
  });
  const silent = await connectTcp(stopping.server, '127.0.0.6');
  const halfHello = await connectTcp(stopping.server, '127.0.0.6', true);
  t.after(() => [silent, halfHello].forEach((c) => c.socket.destroy()));
  stopped = true;
  await stopping.cluster.cleanup();
  await event('the connections in their handshake to be cut by the stop', Promise.all([silent.closed, halfHello.closed]));
  assert.equal(stopping.server.agentApiConnections.handshakesInProgress, 0);
});
