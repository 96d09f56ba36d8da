/**
 * What one entry change costs the server with many agents holding Sync streams: simulated agents (F_AGENTS, default
 * 1,000), each with F_OWN entries of its own (default 4) and all authorized for F_SHARED entries under the
 * datacenter's node alias (default 2,000). Measured: the server's CPU per single-entry create, of an entry under one
 * agent, or under the node alias with F_UNDER_ALIAS=1. Loopback only; not part of `npm run bench`:
 * `node dist/bench/entry-change-fanout.js` after a build.
 */
import fs from 'node:fs';
import net from 'node:net';
import { startCluster, type Cluster } from '../test/support/cluster.js';
import { SimulatedAgent } from './simulated-agent.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
async function inBatches<T>(count: number, concurrency: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(count);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < count) { const i = next++; out[i] = await make(i); } }));
  return out;
}
async function attestRelay(serverPort: number): Promise<{ address: string; close: () => void }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const host = Math.floor(connections++ / 80);
    const upstream = net.connect({ host: '127.0.0.1', port: serverPort, localAddress: `127.0.${Math.floor(host / 250)}.${2 + (host % 250)}` });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => { sockets.delete(s); (s === client ? upstream : client).destroy(); });
    }
    client.pipe(upstream); upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => { for (const s of sockets) s.destroy(); server.close(); } };
}

const AGENTS = Number(process.env['F_AGENTS'] ?? 1000);
const SHARED = Number(process.env['F_SHARED'] ?? 2000);
const OWN = Number(process.env['F_OWN'] ?? 4);
const CHANGES = 10;

async function main(): Promise<void> {
  const cluster: Cluster = await startCluster('meshid-bench-fanout-', []);
  const agents: SimulatedAgent[] = [];
  const relay = await attestRelay(Number(cluster.server.address().split(':')[1]));
  try {
    const roots = (await cluster.admin.call('Bundles', 'GetBundle', {})).x509_authorities ?? [];
    await cluster.createEntry({ spiffeId: 'spiffe://example.org/shared/w0', selectors: ['unix:uid:20000'] });
    const sharedEntries = Array.from({ length: SHARED - 1 }, (_, i) => ({ spiffe_id: `spiffe://example.org/ns/default/sa/service-${i + 1}`, parent_id: 'spiffe://example.org/meshid/node-alias/east', selectors: [{ type: 'k8s', value: `ns:default` }, { type: 'k8s', value: `sa:service-${i + 1}` }] }));
    const alias = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: 'spiffe://example.org/shared/w0' })).entries![0]!.parent_id!;
    for (const e of sharedEntries) e.parent_id = alias;
    for (let b = 0; b < sharedEntries.length; b += 1000) await cluster.admin.call('Entries', 'CreateEntries', { entries: sharedEntries.slice(b, b + 1000) });
    const tokens = await inBatches(AGENTS, 16, async () => (await cluster.admin.call('Tokens', 'GenerateJoinToken', { datacenter: 'east' })).token!);
    agents.push(...(await inBatches(AGENTS, 16, (i) => SimulatedAgent.attest(cluster.server.address(), relay.address, tokens[i]!, roots, () => undefined))));
    const own = agents.flatMap((a, i) => Array.from({ length: OWN }, (_, k) => ({ spiffe_id: `spiffe://example.org/own/a${i}/w${k}`, parent_id: a.id, selectors: [{ type: 'unix', value: `uid:${10_000 + k}` }] })));
    for (let b = 0; b < own.length; b += 1000) await cluster.admin.call('Entries', 'CreateEntries', { entries: own.slice(b, b + 1000) });
    const t0 = performance.now();
    const cpu0 = cpuSeconds(cluster.server.pid!);
    for (const a of agents) a.start();
    await Promise.all(agents.map((a) => a.synced()));
    process.stdout.write(`${AGENTS} agents synced (${agents[0]!.entries} entries each) in ${(performance.now() - t0).toFixed(0)} ms; server CPU ${(cpuSeconds(cluster.server.pid!) - cpu0).toFixed(1)} s\n`);
    await sleep(5000);
    const pid = cluster.server.pid!;
    let c = cpuSeconds(pid);
    await sleep(5000);
    const idle = cpuSeconds(pid) - c;
    c = cpuSeconds(pid);
    for (let i = 0; i < CHANGES; i++) {
      const t = performance.now();
      await cluster.admin.call('Entries', 'CreateEntries', { entries: [{ spiffe_id: `spiffe://example.org/own/a0/extra${i}`, parent_id: process.env['F_UNDER_ALIAS'] ? alias : agents[0]!.id, selectors: [{ type: 'unix', value: `uid:${30_000 + i}` }] }] });
      await sleep(500 - Math.min(499, performance.now() - t));
    }
    // The window measured is the changes' 5 s and 2 s after them, against the idle CPU of 5 s scaled to 7.
    await sleep(2000);
    const busy = cpuSeconds(pid) - c;
    process.stdout.write(`idle CPU over 5 s: ${idle.toFixed(2)} s; ${CHANGES} single-entry creates (+7 s): ${busy.toFixed(2)} s → per change ≈ ${((busy - idle * 7 / 5) / CHANGES * 1000).toFixed(0)} ms\n`);
  } finally {
    for (const a of agents) a.stop();
    relay.close();
    await cluster.cleanup();
  }
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
