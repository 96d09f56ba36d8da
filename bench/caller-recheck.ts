/**
 * Not a target: what callerRecheck (src/agent/endpoints/caller-recheck.ts) costs per stream and push, on P3's shape: a
 * rotation reaches 1,000 SDS streams over a few connections in one event-loop turn, and each stream checks its caller
 * before its response. The calls are stand-ins whose getPeer() reads the socket through a Proxy, as grpc-js reads
 * Node's HTTP/2 session socket; the attestor answers from memory, as the agent's does for a caller it has seen
 * (AttestationMemo), so what is measured is the check's own bookkeeping. `node dist/bench/caller-recheck.js`; compare
 * two trees by running each one's, interleaved.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { callerRecheck } from '../src/agent/endpoints/caller-recheck.js';
import type { Selector } from '../src/common/spiffe/selector.js';
import { report, type BenchResult } from './report.js';

const STREAMS = 1_000;
const CONNECTIONS = 4;

/** A caller's selectors as the unix attestor gives them: ids, names, path and executable hash. */
function selectorsOf(uid: number): Selector[] {
  return [
    `uid:${uid}`,
    `user:svc${uid}`,
    `gid:${uid}`,
    `group:svc${uid}`,
    'supplementary_gid:998',
    'supplementary_group:envoy',
    'path:/usr/local/bin/envoy',
    `sha256:${'5f'.repeat(32)}`,
  ].map((value) => ({ type: 'unix', value }));
}

function standInCall(connection: { remoteAddress: string; remotePort: undefined }): { getPeer(): string } {
  const socket = new Proxy({}, { get: (_target, property) => Reflect.get(connection, property) }) as typeof connection;
  return {
    getPeer(): string {
      if (!socket.remoteAddress) return 'unknown';
      return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
    },
  };
}

/** Nanoseconds per stream of a push, median and best of `rounds` pushes (after as many to warm up). */
async function nanosPerStream(rounds: number): Promise<{ median: number; best: number }> {
  const connections = Array.from({ length: CONNECTIONS }, (_, i) => ({ remoteAddress: `uds-peer#${i}`, remotePort: undefined }));
  const selectors = connections.map((_, i) => selectorsOf(1000 + i));
  const calls = Array.from({ length: STREAMS }, (_, i) => ({ call: standInCall(connections[i % CONNECTIONS]!), selectors: selectors[i % CONNECTIONS]! }));
  const attested = new Map(connections.map((c, i) => [c.remoteAddress, selectors[i]!]));
  const recheck = callerRecheck((call: { getPeer(): string }) => attested.get(call.getPeer())!);
  const perPush: number[] = [];
  for (let round = -rounds; round < rounds; round++) {
    const started = process.hrtime.bigint();
    for (const { call, selectors: opened } of calls) recheck(call, opened);
    if (round >= 0) perPush.push(Number(process.hrtime.bigint() - started) / STREAMS);
    // The next push is another turn: the check attests each connection again.
    await nextTurn();
  }
  perPush.sort((a, b) => a - b);
  return { median: perPush[perPush.length >> 1]!, best: perPush[0]! };
}

export async function benchCallerRecheck(rounds: number): Promise<BenchResult[]> {
  const { median, best } = await nanosPerStream(rounds);
  const shape = `${STREAMS} streams over ${CONNECTIONS} connections`;
  return [
    { name: `caller recheck per stream and push, ${shape}, median of ${rounds} pushes`, value: median, unit: 'ns' },
    { name: `caller recheck per stream and push, ${shape}, best push`, value: best, unit: 'ns' },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  report(await benchCallerRecheck(Number(process.env['BENCH_ROUNDS'] ?? 2000)));
}
