/**
 * A real agent and a workload process that drops from root to uid 65534 after connecting (as daemons that open their
 * connections before dropping privileges do). The agent refuses the call made over the connection root opened, closes
 * that connection, and the client's next call, over a new connection, is attested as the user it now is.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { startCluster } from '../support/cluster.js';
import { HoldingRelay } from '../support/holding-relay.js';
import { event } from '../support/event.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

const CLIENT = path.join(packageRoot, 'dist/src/agent/cli/workload-client.js');

/** Runs in the child: one fetch as root, setuid, then fetches until one succeeds (bounded). Prints every outcome. */
const SCRIPT = `
  const { WorkloadApiClient } = await import(process.argv[1]);
  const client = new WorkloadApiClient(process.argv[2]);
  const attempt = () => client.fetchX509Svid().then((r) => 'ok ' + r.svids.map((s) => s.spiffe_id).join(','), (e) => 'err ' + e.code + ': ' + e.message);
  const outcomes = [await attempt()];
  process.setgroups([]);
  process.setgid(65534);
  process.setuid(65534);
  outcomes.push(await attempt());
  for (let i = 0; i < 100 && !outcomes.at(-1).startsWith('ok'); i++) {
    await new Promise((r) => setTimeout(r, 20));
    outcomes.push(await attempt());
  }
  process.stdout.write(JSON.stringify(outcomes));
  process.exit(0);
`;

test('a workload that changes its uid after connecting gets one UNAVAILABLE, then its new identity over a new connection', async (t) => {
  const cluster = await startCluster('meshid-setuid-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/root-side', selectors: [`unix:uid:${process.getuid!()}`] });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/nobody-side', selectors: ['unix:uid:65534'] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });

  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, CLIENT, agent.socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  teardown(t).after(() => void child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, err);
  const outcomes = JSON.parse(out) as string[];
  assert.equal(outcomes[0], 'ok spiffe://example.org/root-side');
  assert.match(outcomes[1]!, /^err unavailable: .*workload attestation failed: process \d+ changed its uid\/gid since it connected$/);
  assert.equal(outcomes.at(-1), 'ok spiffe://example.org/nobody-side', outcomes.join('\n'));
  // Never the identity it connected with once it changed, whatever the timing of the reconnection.
  assert.ok(outcomes.slice(1, -1).every((o) => o.startsWith('err unavailable')), outcomes.join('\n'));
});

/**
 * Runs `script` (an ES module) in a child that prints "dropped" once it has changed its uid: `dropped` resolves then,
 * `output` with everything it printed once it exited 0. The child is killed when the test ends: one left waiting for
 * its "go" line by a failed assertion would keep the file running until the runner's timeout, hiding the failure.
 */
function droppingChild(t: TestContext, script: string, args: string[]): { dropped: Promise<void>; output: Promise<string>; go: () => void } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let testEnded = false;
  teardown(t).after(() => {
    testEnded = true;
    child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const dropped = new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('dropped\n')) resolve();
    }),
  );
  const output = new Promise<string>((resolve, reject) =>
    child.on('close', (code) => {
      // Killed because the test already ended (failed): nothing awaits the outcome any more.
      if (testEnded) return;
      if (code === 0) resolve(out);
      else reject(new Error(`the child exited ${code}: ${err}`));
    }),
  );
  // A child that ends before it dropped its uid fails the test at once instead of leaving it waiting.
  const ended = output.then(() => Promise.reject(new Error(`the child exited without dropping its uid: ${out}`)));
  // For a script that waits for a line on stdin before it drops its uid.
  const go = (): void => void child.stdin.write('go\n');
  return { dropped: Promise.race([dropped, ended]), output, go };
}

/** Runs in the child: a FetchX509SVID stream opened as root, then setuid with the stream left open; reports what it gets. */
const STREAM_SCRIPT = `
  const { WorkloadApiClient } = await import(process.argv[1]);
  const client = new WorkloadApiClient(process.argv[2]);
  const watch = client.watchX509Svids();
  const ids = (m) => m.svids.map((s) => s.spiffe_id).sort().join(',');
  const seen = [ids((await watch.next()).value)];
  process.setgroups([]);
  process.setgid(65534);
  process.setuid(65534);
  process.stdout.write('dropped\\n');
  let end = 'still open after 10 s';
  const bound = setTimeout(() => watch.cancel(), 10_000);
  try {
    for (;;) {
      const next = await watch.next();
      if (next.done) break;
      seen.push(ids(next.value));
    }
  } catch (e) {
    end = 'err ' + e.code + ': ' + e.message;
  }
  clearTimeout(bound);
  process.stdout.write(JSON.stringify({ seen, end }) + '\\n');
  process.exit(0);
`;

test('a stream opened before its process changed uid gets nothing more: a new identity of the old uid ends it instead', async (t) => {
  const cluster = await startCluster('meshid-setuid-stream-');
  teardown(t).after(() => cluster.cleanup());
  const root = `unix:uid:${process.getuid!()}`;
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/root-side', selectors: [root] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });

  const child = droppingChild(t, STREAM_SCRIPT, [CLIENT, agent.socketPath]);
  await event('the child dropping its uid', child.dropped, 20_000);
  // Root gets another identity while the stream the process opened as root is still open.
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/root-side-2', selectors: [root] });
  const out = await event('the child reporting what its stream got after the uid change', child.output, 30_000);
  const { seen, end } = JSON.parse(out.slice(out.indexOf('\n') + 1)) as { seen: string[]; end: string };
  assert.deepEqual(seen, ['spiffe://example.org/root-side'], 'nothing pushed after the process became uid 65534');
  assert.match(end, /^err unavailable: .*changed its uid\/gid since it connected/);
});

const SDS_CLIENT = path.join(packageRoot, 'dist/test/support/sds-client.js');

/**
 * Runs in the child: a StreamSecrets stream opened (and so attested) as root, then setuid. 'late' sends its first
 * request only after the drop; 'unresolved' asked before it for a name that has no entry yet. Prints what it got.
 */
const SDS_SCRIPT = `
  const sds = await import(process.argv[1]);
  const mode = process.argv[3];
  const client = sds.connectSds(process.argv[2]);
  const stream = new sds.SotwClient(client);
  if (mode === 'unresolved') stream.subscribe(['spiffe://example.org/root-later']);
  // Connected as root before the drop, whatever the machine's load (the agent reads the peer's credentials of the
  // connection); then a line on stdin, once the test has seen the agent take the request sent before the drop.
  await new Promise((resolve, reject) => client.waitForReady(Date.now() + 20000, (e) => (e ? reject(e) : resolve())));
  await new Promise((r) => process.stdin.once('data', r));
  process.setgroups([]);
  process.setgid(65534);
  process.setuid(65534);
  process.stdout.write('dropped\\n');
  if (mode === 'late') stream.subscribe(['spiffe://example.org/root-side']);
  let result;
  try {
    const m = await stream.next(8000);
    result = 'got ' + sds.decodeSecrets(m.resources).map((x) => x.name + (x.tls_certificate ? '+key' : '')).join(',');
  } catch (e) {
    result = 'err ' + e.message;
  }
  process.stdout.write(result + '\\n');
  process.exit(0);
`;

for (const mode of ['late', 'unresolved']) {
  test(`an SDS stream opened before its process changed uid gets no first response either (${mode} request)`, async (t) => {
    const cluster = await startCluster('meshid-setuid-sds-');
    teardown(t).after(() => cluster.cleanup());
    const root = `unix:uid:${process.getuid!()}`;
    await cluster.createEntry({ spiffeId: 'spiffe://example.org/root-side', selectors: [root] });
    // At debug, the agent logs each StreamSecrets stream's first request.
    const agent = await cluster.startAgent({ joinToken: await cluster.token(), extraArgs: ['--log-level', 'debug'] });
    const child = droppingChild(t, SDS_SCRIPT, [SDS_CLIENT, agent.socketPath, mode]);
    // 'unresolved': the request is the agent's before the uid changes (an event, not a guess at how long it takes).
    if (mode === 'unresolved') await agent.waitForLog(/"msg":"SDS StreamSecrets opened"/);
    child.go();
    await event('the child dropping its uid', child.dropped, 20_000);
    // Root gets the identity the stream asked for while the process is now uid 65534.
    if (mode === 'unresolved') await cluster.createEntry({ spiffeId: 'spiffe://example.org/root-later', selectors: [root] });
    const result = (await event('the child reporting how its call ended after the uid change', child.output, 30_000)).split('\n')[1] ?? '';
    assert.match(result, /^err .*changed its uid\/gid since it connected/, result);
  });
}

/**
 * Runs in the child: a FetchJWTSVID sent as root, then, on a line on stdin (its token being signed meanwhile), setuid.
 * The audience is long enough for the answer to be one the holding relay holds. Prints what the call got.
 */
const JWT_SCRIPT = `
  const { WorkloadApiClient } = await import(process.argv[1]);
  const client = new WorkloadApiClient(process.argv[2], { timeoutMs: 20000 });
  const result = client.fetchJwtSvid(['${'a'.repeat(1000)}']).then((r) => 'ok ' + r.svids.map((s) => s.spiffe_id).join(','), (e) => 'err ' + e.code + ': ' + e.message);
  await new Promise((r) => process.stdin.once('data', r));
  process.setgroups([]);
  process.setgid(65534);
  process.setuid(65534);
  process.stdout.write('dropped\\n');
  process.stdout.write((await result) + '\\n');
  process.exit(0);
`;

test('a FetchJWTSVID whose process changed uid while its token was signed gets no token', async (t) => {
  const cluster = await startCluster('meshid-setuid-jwt-');
  const relay = await HoldingRelay.start(cluster.server.address());
  teardown(t).after(async () => {
    relay.release();
    await relay.close();
    await cluster.cleanup();
  });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/root-side', selectors: [`unix:uid:${process.getuid!()}`] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token(), serverAddress: relay.address });
  relay.holding = true;
  const child = droppingChild(t, JWT_SCRIPT, [CLIENT, agent.socketPath]);
  // Signed by the server, the answer held on its way back to the agent: the caller was attested as root.
  await until('the SignJwtSvid answer held', () => (relay.heldCount > 0 ? true : undefined));
  child.go();
  await event('the child dropping its uid', child.dropped, 20_000);
  relay.release();
  const result = (await event('the child reporting how its call ended after the uid change', child.output, 30_000)).split('\n')[1] ?? '';
  assert.match(result, /^err unavailable: .*changed its uid\/gid since it connected/, result);
});
