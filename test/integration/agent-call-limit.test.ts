/**
 * Calls that never send a message must not let one local uid grow the agent without bound (uid-call-limit.ts,
 * MAX_STREAMS_PER_CONNECTION): a real agent process with max_calls_per_uid 40, a process of uid 65534 (no entry)
 * holding idle streams on the socket (test/support/idle-stream-client.ts), and this process (root, with an entry)
 * fetching its SVID meanwhile.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { packageRoot } from '../../src/common/paths.js';
const MAX_STREAMS_PER_CONNECTION = 1000;
/** uid-call-limit.ts REFUSALS_PER_CONNECTION, restated: the test pins the figure. */
const REFUSALS_PER_CONNECTION = 100;
import { AGENT_MAIN, startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';

const IDLE_CLIENT = path.join(packageRoot, 'dist/test/support/idle-stream-client.js');
const SPIFFE_ID = 'spiffe://example.org/call-limit-victim';
const LIMIT = 40;
const NOBODY = 65534;

interface Batch {
  refused: Array<{ code: number; details: string }>;
  closedByAgent: number;
  open: number;
}

let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  cluster = await startCluster('meshid-call-limit-');
  await cluster.createEntry({ spiffeId: SPIFFE_ID, selectors: [`unix:uid:${process.getuid!()}`] });
  const configFile = path.join(cluster.dir, 'agent.json');
  fs.writeFileSync(configFile, JSON.stringify({ max_calls_per_uid: LIMIT }));
  agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--config', configFile] });
});

after(async () => {
  await cluster?.cleanup();
});

/** The idle-stream client as uid 65534, and a function sending it one command and resolving with its answer. */
function idleClient(t: { after(fn: () => void): void }, started?: (child: ChildProcessWithoutNullStreams) => void, uid = NOBODY): (command: string) => Promise<unknown> {
  const child = spawn(process.execPath, [IDLE_CLIENT, agent.socketPath], { uid, gid: uid, stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  t.after(() => child.kill('SIGKILL'));
  started?.(child);
  const answers = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return async (command) => {
    child.stdin.write(`${command}\n`);
    const next = await answers.next();
    if (next.done === true) throw new Error(`the idle-stream client exited: ${stderr}`);
    return JSON.parse(next.value);
  };
}

test('idle streams of a uid beyond max_calls_per_uid are refused RESOURCE_EXHAUSTED and closed, while another uid still gets its SVID', { timeout: 60_000 }, async (t) => {
  const send = idleClient(t);
  const first = (await send(`open ${LIMIT + 5}`)) as Batch;
  assert.equal(first.refused.length, 5, JSON.stringify(first));
  for (const { code, details } of first.refused) {
    assert.equal(code, 8, details);
    assert.match(details, new RegExp(`^uid ${NOBODY} has ${LIMIT} calls open on the meshid-agent socket, the most allowed \\(agent config max_calls_per_uid\\); end some of its calls or raise the limit$`));
  }
  // The refused streams are reset by the agent, not left holding memory until the client ends them.
  assert.equal(first.closedByAgent, 5);
  assert.equal(first.open, LIMIT);

  const victim = agent.client();
  try {
    const svid = await victim.fetchX509Svid();
    assert.equal(svid.svids[0]?.spiffe_id, SPIFFE_ID);
  } finally {
    victim.close();
  }
  const warnings = agent.output().split('\n').filter((l) => l.includes('the most calls open allowed'));
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, new RegExp(`"uid":${NOBODY}`));
  // At its limit, a call without the Workload API header is refused by the limit, which must be the first check
  // (interceptors.ts): refused either way, before its message is decoded or its caller attested.
  const headerless = (await send('open 1 no-header')) as Batch;
  assert.deepEqual(headerless.refused.map((r) => r.code), [8], JSON.stringify(headerless));
  assert.equal(headerless.closedByAgent, 1);
  // The next test starts with the uid's count at zero.
  assert.deepEqual(await send('cancel'), { cancelled: LIMIT });
});

test('a uid at its call limit still passes meshid-agent healthcheck run as that uid (health checks have a count of their own), so its flood does not get a healthy agent restarted', { timeout: 60_000 }, async (t) => {
  const send = idleClient(t);
  assert.equal(((await send(`open ${LIMIT + 1}`)) as Batch).open, LIMIT);
  const probe = spawnSync(process.execPath, [AGENT_MAIN, 'healthcheck', '--socket-path', agent.socketPath], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 30_000 });
  assert.equal(probe.status, 0, probe.stderr);
  assert.deepEqual(await send('cancel'), { cancelled: LIMIT });
});

test('calls of a uid are counted out when they end, cancelled by the client or refused by a later check', { timeout: 60_000 }, async (t) => {
  const send = idleClient(t);
  assert.equal(((await send(`open ${LIMIT}`)) as Batch).refused.length, 0);
  assert.deepEqual(await send('cancel'), { cancelled: LIMIT });
  // Without the Workload API header: each call is counted, then refused INVALID_ARGUMENT by the header check, and its
  // stream closed by the agent although the client never ends it.
  const headerless = (await send(`open ${LIMIT} no-header`)) as Batch;
  assert.deepEqual(new Set(headerless.refused.map((r) => r.code)), new Set([3]));
  assert.equal(headerless.refused.length, LIMIT);
  assert.equal(headerless.closedByAgent, LIMIT);
  // Every call before has ended: the uid has its whole limit again.
  const again = (await send(`open ${LIMIT + 1}`)) as Batch;
  assert.equal(again.refused.length, 1, JSON.stringify(again));
  assert.equal(again.open, LIMIT);
});

test('a connection that keeps opening calls beyond its uid\'s limit gets GOAWAY after 100 refusals: its open calls go on, its later streams are refused before they become calls', { timeout: 60_000 }, async (t) => {
  const send = idleClient(t);
  assert.equal(((await send(`open ${LIMIT}`)) as Batch).open, LIMIT);
  const flood = (await send(`open ${REFUSALS_PER_CONNECTION + 50}`)) as Batch & { refusedStreams: number; goaway: boolean };
  // Each of the first 100 hears why (RESOURCE_EXHAUSTED); the rest are turned away by HTTP/2 (REFUSED_STREAM, which
  // clients retry on a new connection) without costing the agent a call each.
  assert.equal(flood.refused.length, REFUSALS_PER_CONNECTION, JSON.stringify({ ...flood, refused: flood.refused.length }));
  assert.ok(flood.refused.every((r) => r.code === 8));
  assert.equal(flood.refusedStreams, 50);
  assert.equal(flood.goaway, true);
  // The calls opened before are not cut off by the GOAWAY: the uid still has its whole limit open.
  const other = (await idleClient(t)('open 1')) as Batch;
  assert.equal(other.refused.length, 1, JSON.stringify(other));
  assert.equal(other.open, 0);
  assert.deepEqual(await send('cancel'), { cancelled: LIMIT });
});

test('calls of a connection that dies without ending them (its process killed) are counted out: the uid can open its whole limit again', { timeout: 60_000 }, async (t) => {
  let holder: ChildProcessWithoutNullStreams | undefined;
  const send = idleClient(t, (child) => (holder = child));
  assert.equal(((await send(`open ${LIMIT}`)) as Batch).open, LIMIT);
  const exited = new Promise((resolve) => holder!.once('exit', resolve));
  holder!.kill('SIGKILL');
  await exited;
  // The agent learns of the dead connection on its own time: a new connection's calls are refused until it has.
  const fresh = idleClient(t);
  for (let tries = 0; ; tries++) {
    const probe = (await fresh('open 1')) as Batch;
    if (probe.open === 1) break;
    assert.ok(tries < 400, 'the killed connection\'s calls still count against the uid');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const rest = (await fresh(`open ${LIMIT}`)) as Batch;
  assert.equal(rest.open, LIMIT - 1);
  assert.equal(rest.refused.length, 1);
  assert.deepEqual(await fresh('cancel'), { cancelled: LIMIT });
});

test('calls a client keeps open past their deadline are ended DEADLINE_EXCEEDED and counted out: the uid can open its whole limit again', { timeout: 60_000 }, async (t) => {
  const send = idleClient(t);
  // Requests never sent: grpc-js ends each call itself when its deadline passes, with the status alone.
  await send(`open ${LIMIT} timeout=200m`);
  assert.deepEqual(await send('statuses'), { codes: { 4: LIMIT }, withMessages: 0, open: 0 });
  const again = (await send(`open ${LIMIT}`)) as Batch;
  assert.equal(again.refused.length, 0, JSON.stringify(again.refused.slice(0, 1)));
  assert.equal(again.open, LIMIT);
  assert.deepEqual(await send('cancel'), { cancelled: LIMIT });
});

test('SDS streams a client keeps open past their deadline are ended DEADLINE_EXCEEDED after their secrets and counted out', { timeout: 60_000 }, async (t) => {
  // This process's uid has an entry: each stream gets its SVID, then its deadline passes.
  const send = idleClient(t, undefined, process.getuid!());
  // Long enough for forty first answers on a loaded machine; the test waits for the deadline either way.
  await send(`open ${LIMIT} timeout=2500m sds`);
  assert.deepEqual(await send('statuses'), { codes: { 4: LIMIT }, withMessages: LIMIT, open: 0 });
  const again = (await send(`open ${LIMIT}`)) as Batch;
  assert.equal(again.refused.length, 0, JSON.stringify(again.refused.slice(0, 1)));
  assert.deepEqual(await send('cancel'), { cancelled: LIMIT });
});

test('the agent socket advertises its stream limit per connection in SETTINGS', { timeout: 30_000 }, async (t) => {
  const send = idleClient(t);
  assert.deepEqual(await send('settings'), { maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION });
  assert.equal(MAX_STREAMS_PER_CONNECTION, 1000);
});
