/**
 * The agent's channel to the server takes no service config from DNS (node-client.ts): grpc-js would otherwise look
 * up a TXT record of the server's name and apply what it says (a retry policy, say) under the agent's own refusal
 * handling. A stub DNS server on loopback, made the process's resolver (c-ares, which grpc-js's TXT lookups use) for
 * the test, records the queries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { NodeClient } from '../../../src/agent/client/node-client.js';
import { silentLogger } from '../../../src/common/log.js';

/** The name a DNS query asks about (QNAME after the 12-byte header). */
function queriedName(packet: Buffer): string {
  const labels: string[] = [];
  for (let i = 12; i < packet.length && packet[i] !== 0; i += packet[i]! + 1) labels.push(packet.subarray(i + 1, i + 1 + packet[i]!).toString());
  return labels.join('.');
}

test("the agent's channel asks DNS for no service config of the server's name", async (t) => {
  const queries: string[] = [];
  const stub = dgram.createSocket('udp4');
  stub.on('message', (packet) => queries.push(queriedName(packet)));
  await new Promise<void>((resolve) => stub.bind(0, '127.0.0.1', resolve));
  t.after(() => stub.close());
  const servers = dns.getServers();
  dns.setServers([`127.0.0.1:${stub.address().port}`]);
  t.after(() => dns.setServers(servers));
  // A port nobody listens on: the call fails, after the channel has resolved the name.
  const closed = net.createServer();
  const port = await new Promise<number>((resolve) => closed.listen(0, '127.0.0.1', () => resolve((closed.address() as net.AddressInfo).port)));
  await new Promise((resolve) => closed.close(resolve));
  const client = new NodeClient({ serverAddress: `localhost:${port}`, log: silentLogger(), deadlineMs: 2_000 });
  t.after(() => client.close());
  await assert.rejects(client.attest('join-token', Buffer.alloc(0), { insecure: true }));
  // grpc-js finds addresses with getaddrinfo (/etc/hosts for localhost); the stub hears only the TXT lookup of the
  // name itself, sent as resolution starts: by the time the call failed it had come.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(queries, []);
});
