/**
 * What a meshid-agent process logs for an Envoy waiting for a secret nothing of its caller's resolves: an operator
 * asking "why does this Envoy get no certificate?" finds the names, the caller's pid, uid, gid and selectors at warn,
 * once however often the Envoy reconnects, and a line at info once the secret is served. Real server and agent.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { startClusterServing, type AgentProcess, type Cluster } from '../support/cluster.js';
import { LEVEL, parseLogLines, type LogRecord } from '../support/log-lines.js';
import { connectSds, DeltaClient, secretsByName, SotwClient } from '../support/sds-client.js';

const HELD = 'spiffe://example.org/sidecar/held';
const LATER = 'spiffe://example.org/sidecar/later';
const uid = process.getuid!();

let cluster: Cluster;
let agent: AgentProcess;
let sds: grpc.Client;

before(async () => {
  ({ cluster, agent } = await startClusterServing('meshid-sds-waiting-', [HELD]));
  sds = connectSds(agent.socketPath);
});

after(async () => {
  sds?.close();
  await cluster?.cleanup();
});

const waitLines = (): LogRecord[] => parseLogLines(agent.output()).filter((r) => /^SDS stream waits for secrets/.test(r.msg));
const names = (r: LogRecord): string => JSON.stringify(r['names']);

test('a stream waiting for a name the caller holds no identity for is one warn line naming it and the caller, however often it reconnects; served names are not logged; the name served is logged at info', async () => {
  const streams: Array<SotwClient | DeltaClient> = [];
  try {
    // An Envoy reconnecting over and over with the same names, on both protocols.
    for (let i = 0; i < 3; i++) {
      const sotw = new SotwClient(sds);
      streams.push(sotw);
      sotw.subscribe([LATER, 'ROOTCA']);
      assert.deepEqual([...secretsByName(await sotw.next(10_000)).keys()], ['ROOTCA']);
    }
    const delta = new DeltaClient(sds);
    streams.push(delta);
    delta.request({ subscribe: [LATER, 'ROOTCA'] });
    await delta.next(10_000);
    const served = new SotwClient(sds);
    streams.push(served);
    served.subscribe(['default', HELD, 'ROOTCA', 'ALL']);
    assert.equal((await served.next(10_000)).resources?.length, 4);
    // The log is one ordered stream: once a later stream's line is there, every line before it is too.
    const marker = new SotwClient(sds);
    streams.push(marker);
    marker.subscribe(['no-such-alias']);
    await agent.waitForLog(/no-such-alias/);

    const lines = waitLines();
    assert.deepEqual(lines.map(names), [JSON.stringify([LATER]), JSON.stringify(['no-such-alias'])], 'one line per name set; none for served names');
    const [line] = lines;
    assert.equal(line!.level, LEVEL.warn);
    assert.equal(line!['callerPid'], process.pid);
    assert.equal(line!['uid'], uid);
    assert.equal(line!['gid'], process.getgid!());
    assert.ok((line!['selectors'] as string[]).includes(`unix:uid:${uid}`), JSON.stringify(line!['selectors']));
    assert.match(line!.msg, /meshid-server entry show/);

    // The operator registers the identity: the waiting streams get it, and the log says so.
    await cluster.createEntry({ spiffeId: LATER, selectors: [`unix:uid:${uid}`] });
    const pushed = await (streams[0] as SotwClient).next(20_000);
    assert.ok(secretsByName(pushed).has(LATER));
    const servedLine = await agent.waitForLog(/SDS stream now gets secrets it waited for/);
    assert.match(servedLine, new RegExp(`"names":\\["${LATER}"\\]`));
    assert.match(servedLine, /"level":30/);
  } finally {
    for (const s of streams) s.cancel();
  }
});
