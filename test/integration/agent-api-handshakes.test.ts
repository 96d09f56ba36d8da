/**
 * TCP connections to the agent API that have not finished their TLS handshake (agent-api-handshakes.ts), shown with
 * raw TCP clients that send nothing or the first bytes of a ClientHello: each is cut at its deadline, and when the
 * bound in total is full the oldest of the source holding the most gives way to a newcomer. A connection whose
 * handshake is done, a real agent's, is never cut by either. Loopback addresses other than 127.0.0.1 stand in for
 * other hosts. The bounds are lowered for the test (MeshidServer's agentApiConnectionLimits). In-process server on a
 * FakeClock an hour behind real time (OpenSSL judges certificates by real time).
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
import { compileServerConfig } from '../../src/server/config.js';
import { silentLogger } from '../../src/common/log.js';
import { Cluster, DATACENTER, TRUST_DOMAIN } from '../support/cluster.js';
import { tempDir } from '../support/server-kit.js';
import { until } from '../support/until.js';

const clock = new FakeClock(Date.now() - 3_600_000);
const LIMITS: Partial<ConnectionLimits> = { handshakeMs: 10_000, handshakesTotal: 4 };
/** The first bytes of a TLS record holding a ClientHello, the rest of which never comes. */
const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
let cluster: Cluster;
let server: MeshidServer;
let agent: MeshidAgent;

/** `promise`, or a rejection naming `what` if it has not settled in 10 s (as until() gives up): a server event, not time logic. */
async function event<T>(what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface RawSocket {
  socket: net.Socket;
  closed: Promise<void>;
}

/** A TCP connection from `localAddress` that never finishes a TLS handshake. */
async function openTcp(localAddress: string, partialHello = false): Promise<RawSocket> {
  const socket = net.connect({ host: '127.0.0.1', port: server.agentPort, localAddress });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('connect', resolve));
  if (partialHello) socket.write(PARTIAL_CLIENT_HELLO);
  return { socket, closed };
}

/** openTcp, once the server counts it (while the bound in total has room). */
async function connectTcp(localAddress: string, partialHello = false): Promise<RawSocket> {
  const before = server.agentApiConnections.handshakesInProgress;
  const c = await openTcp(localAddress, partialHello);
  await until('the server to count the handshake', () => (server.agentApiConnections.handshakesInProgress > before ? true : undefined));
  return c;
}

/** A full TLS handshake on a new connection: a round trip through the server's event loop, then closed. */
async function roundTrip(): Promise<void> {
  const socket = tls.connect({ host: '127.0.0.1', port: server.agentPort, rejectUnauthorized: false, servername: 'meshid-server', ALPNProtocols: ['h2'] });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  socket.destroy();
}

function streamOf(a: MeshidAgent): unknown {
  return (a as unknown as { connection: { current: unknown } }).connection.current;
}

before(async () => {
  const t = tempDir('meshid-agent-api-handshakes-');
  const config = compileServerConfig({
    trust_domain: TRUST_DOMAIN,
    datacenters: [DATACENTER],
    data_dir: path.join(t.dir, 'server', 'data'),
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(t.dir, 'server', 'admin', 'admin.sock'),
  });
  server = await MeshidServer.start({ config, log: silentLogger(), clock, agentApiConnectionLimits: LIMITS });
  cluster = new Cluster(t.dir, { adminSocket: config.adminSocket, address: () => `127.0.0.1:${server.agentPort}`, stop: () => server.stop() }, t.cleanup);
  await cluster.writeBundle();
  agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, random: () => 0.5 },
  );
  await until("the agent's first sync", () => (agent.status().state === 'synced' ? true : undefined));
});

after(async () => {
  await cluster?.cleanup();
});

test('a TCP connection that does not finish its TLS handshake within the deadline is cut and stops counting; a real agent synced meanwhile keeps its stream', async (t) => {
  const stream = streamOf(agent);
  const silent = await openTcp('127.0.0.2');
  const halfHello = await openTcp('127.0.0.2', true);
  t.after(() => [silent, halfHello].forEach((c) => c.socket.destroy()));
  // A round trip later, the server has accepted both (in the order they came).
  await roundTrip();
  clock.advance(LIMITS.handshakeMs! - 1);
  await roundTrip();
  assert.equal(silent.socket.closed, false);
  assert.equal(halfHello.socket.closed, false);
  clock.advance(1);
  await event('the connections to be cut at their deadline', Promise.all([silent.closed, halfHello.closed]));
  await until('the handshakes to stop counting', () => (server.agentApiConnections.handshakesInProgress === 0 ? true : undefined));
  assert.equal(agent.status().state, 'synced');
  assert.equal(streamOf(agent), stream);
});

test('a connection closed by its client, or whose handshake is done, stops counting', async () => {
  const gone = await connectTcp('127.0.0.3');
  gone.socket.destroy();
  await until('the closed connection to stop counting', () => (server.agentApiConnections.handshakesInProgress === 0 ? true : undefined));
  const handshaken = tls.connect({ host: '127.0.0.1', port: server.agentPort, localAddress: '127.0.0.3', rejectUnauthorized: false, servername: 'meshid-server', ALPNProtocols: ['h2'] } as tls.ConnectionOptions);
  handshaken.on('error', () => {});
  await new Promise((resolve) => handshaken.once('secureConnect', resolve));
  await until('the handshaken connection to stop counting', () => (server.agentApiConnections.handshakesInProgress === 0 ? true : undefined));
  // Past its deadline, it is not cut: the deadline was the handshake's.
  clock.advance(LIMITS.handshakeMs!);
  await roundTrip();
  assert.equal(handshaken.destroyed, false);
  handshaken.destroy();
});

test("when the bound in total is full, the oldest handshake of the source holding the most gives way to a newcomer; from that source itself, to its own", async (t) => {
  const stream = streamOf(agent);
  const held: RawSocket[] = [];
  t.after(() => held.forEach((c) => c.socket.destroy()));
  await until("no handshake left from before", () => (server.agentApiConnections.handshakesInProgress === 0 ? true : undefined));
  // One client fills the bound from one address.
  for (let i = 0; i < LIMITS.handshakesTotal!; i++) held.push(await connectTcp('127.0.0.4'));
  const [oldest, second] = held as [RawSocket, RawSocket];

  // An agent's host elsewhere is not kept out: the hoarder's oldest handshake goes.
  const other = await openTcp('127.0.0.5');
  held.push(other);
  await event("the hoarder's oldest to be cut", oldest.closed);
  await until('the newcomer to be counted in its place', () => (server.agentApiConnections.handshakesInProgress === LIMITS.handshakesTotal ? true : undefined));

  // The hoarder (3) still holds the most, but taking from it would leave it below its own newcomer: its own oldest goes.
  const newest = await openTcp('127.0.0.4');
  held.push(newest);
  await event("the hoarder's oldest left to be cut", second.closed);
  assert.equal(server.agentApiConnections.handshakesInProgress, LIMITS.handshakesTotal);
  // A round trip through the server later (on its admin socket: a handshake would be a newcomer too), the newcomers
  // and the hoarder's others are still open.
  await cluster.token();
  for (const c of [other, newest, held[2]!, held[3]!]) assert.equal(c.socket.closed, false);

  // A connection whose handshake is done holds no place: the agent keeps its stream through it all.
  assert.equal(agent.status().state, 'synced');
  assert.equal(streamOf(agent), stream);
  held.forEach((c) => c.socket.destroy());
  await until('the places to be given back', () => (server.agentApiConnections.handshakesInProgress === 0 ? true : undefined));
});
