/**
 * meshid-agent processes through their life against a real meshid-server process: attestation with single-use join
 * tokens, restarts from the data dir (also with the server down, and after kill -9), reconnection, eviction, bans and
 * the insecure bootstrap. Each test has its own cluster on temp dirs. (How an agent finds and trusts the server, and
 * what its start refuses: agent-trust-and-startup.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import { AGENT_MAIN, restartServerProcess, startServerProcess as startClusterServer } from '../support/cluster.js';
import { runNode } from '../support/server-process.js';
import { withCluster, persisted } from '../support/agent-lifecycle-kit.js';
import { isMeshidError } from '../../src/common/errors.js';
import { until } from '../support/until.js';
import { event } from '../support/event.js';

const uid = process.getuid!();

test('a join token is single use: a second agent presenting it is refused and exits saying why', () =>
  withCluster('meshid-agent-token-', async (c) => {
    const token = await c.token();
    await c.startAgent({ name: 'first', joinToken: token });
    const second = await c.startAgent({ name: 'second', joinToken: token, wait: false });
    assert.equal(await second.exitCode(), 1);
    assert.match(second.output(), /PermissionDenied: join token is unknown, already used or revoked; generate a new one with `meshid-server token generate`/);
    assert.doesNotMatch(second.output(), new RegExp(token), 'the token never reaches the output');
  }));

test('grpc-js\'s own messages reach the agent\'s log as lines of subsystem grpc-js, not bare "E …" lines on stderr', () =>
  withCluster('meshid-agent-grpc-log-', async (c) => {
    // An unparsable proxy variable is something grpc-js itself reports (and then connects directly).
    const agent = await c.startAgent({ joinToken: await c.token(), launcher: ['env', 'grpc_proxy=not a proxy url'] });
    await agent.waitForLog(/"subsystem":"grpc-js".*"msg":"cannot parse value of \\"grpc_proxy\\" env var"/);
    assert.doesNotMatch(agent.output(), /^E /m);
  }));

test('the agent keeps its SVID in the data dir: it restarts without a token, and with the server stopped still serves', () =>
  withCluster('meshid-agent-restart-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/survivor', selectors: [`unix:uid:${uid}`] });
    let agent = await c.startAgent({ joinToken: await c.token() });
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/survivor']);
    await persisted(agent, 'spiffe://example.org/survivor');
    for (const name of ['agent-svid.json', 'state.json']) {
      assert.equal(fs.statSync(path.join(agent.dataDir, name)).mode & 0o777, 0o600, name);
    }
    assert.equal(fs.statSync(agent.dataDir).mode & 0o777, 0o700);
    assert.doesNotMatch(agent.output(), /PRIVATE KEY|"privateKey":"[^[]/, 'no key material in the logs');

    await agent.stop();
    agent = await c.startAgent();
    await agent.waitForLog(/in sync with meshid-server/);
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/survivor'], 'no token needed after a restart');

    await agent.stop();
    await c.server.stop();
    agent = await c.startAgent();
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/survivor'], 'served from the data dir with the server down');
    await agent.waitForLog(/"oldestSvidExpiresIn":"23h.*cannot open the Sync stream to meshid-server; serving from the cache/);
    // A new JWT-SVID needs the server: the workload is told that, not something that reads like a broken socket.
    const jwt = await runNode(AGENT_MAIN, ['api', 'fetch', 'jwt', '--audience', 'db', '--socket-path', agent.socketPath]);
    assert.equal(jwt.code, 1);
    assert.match(jwt.err, /^Error: Unavailable: meshid-agent cannot reach meshid-server at 127\.0\.0\.1:\d+ \(SignJwtSvid\): No connection established/);
  }));

test('restarted with the server down, a workload whose entry came while the agent was down is told to retry, then served', () =>
  withCluster('meshid-agent-unsynced-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/elsewhere', selectors: ['unix:uid:12345'] });
    let agent = await c.startAgent({ joinToken: await c.token() });
    await agent.stop();
    await c.createEntry({ spiffeId: 'spiffe://example.org/new-while-down', selectors: [`unix:uid:${uid}`] });
    const address = c.server.address();
    await c.server.stop();
    agent = await c.startAgent();
    // Served from the data dir, which predates the entry: PERMISSION_DENIED would be final to java-spiffe's watchers.
    const client = agent.client();
    try {
      const refused = await client.fetchX509Svid().then(() => undefined, (e: unknown) => e);
      assert.ok(isMeshidError(refused, 'unavailable'), `expected UNAVAILABLE, got ${String(refused)}`);
      assert.match((refused as Error).message, /not synced with meshid-server/);
      await startClusterServer(c, address);
      await agent.waitForLog(/in sync with meshid-server/);
      for (let i = 0; ; i++) {
        if ((await agent.svidIds()).includes('spiffe://example.org/new-while-down')) break;
        if (i === 200) assert.fail('the SVID was never served after the sync');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      client.close();
    }
  }));

test('after kill -9 the agent restarts from a consistent state, and catches up on what changed meanwhile', () =>
  withCluster('meshid-agent-kill-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/keep', selectors: [`unix:uid:${uid}`] });
    const drop = await c.createEntry({ spiffeId: 'spiffe://example.org/drop', selectors: [`unix:uid:${uid}`] });
    let agent = await c.startAgent({ joinToken: await c.token() });
    await persisted(agent, 'spiffe://example.org/keep');
    await persisted(agent, 'spiffe://example.org/drop');
    await agent.stop('SIGKILL');
    await c.deleteEntry(drop);
    await c.createEntry({ spiffeId: 'spiffe://example.org/added-while-down', selectors: [`unix:uid:${uid}`] });
    agent = await c.startAgent();
    // Started from what the killed agent had saved (a state it could not load would be dropped, and the sync alone
    // would still bring the right SVIDs).
    const running = JSON.parse(await agent.waitForLog(/"msg":"meshid-agent is running"/)) as { restoredEntries: number; restoredSvids: number };
    assert.deepEqual([running.restoredEntries, running.restoredSvids], [2, 2], 'the state saved before the kill is loaded');
    // It may serve its stored state first; the sync brings the difference.
    await agent.waitForLog(/in sync with meshid-server/);
    for (let i = 0; i < 100; i++) {
      const ids = (await agent.svidIds()).sort();
      if (ids.join() === ['spiffe://example.org/added-while-down', 'spiffe://example.org/keep'].join()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`the agent did not catch up: ${(await agent.svidIds()).join(', ')}`);
  }));

test('when the server comes back the agent reconnects on its own and an open stream gets new entries', () =>
  withCluster('meshid-agent-reconnect-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/before', selectors: [`unix:uid:${uid}`] });
    const agent = await c.startAgent({ joinToken: await c.token() });
    const client = agent.client();
    const watch = client.watchX509Svids();
    try {
      assert.equal((await event('the first FetchX509SVID message', watch.next())).value?.svids?.length, 1);
      await restartServerProcess(c);
      await c.createEntry({ spiffeId: 'spiffe://example.org/after', selectors: [`unix:uid:${uid}`] });
      // The agent's reconnection backoff comes first: a longer bound than one push.
      await event(
        'a FetchX509SVID message with the entry created after the server restart',
        (async () => {
          for (;;) {
            const r = await watch.next();
            assert.equal(r.done, false, 'the workload stream stays open through the server restart');
            if ((r.value?.svids ?? []).some((s) => s.spiffe_id === 'spiffe://example.org/after')) return;
          }
        })(),
        30_000,
      );
    } finally {
      watch.cancel();
      client.close();
    }
  }));

test('evicted: the agent re-attests with a configured unused token; evicted again without one, it says what to do', () =>
  withCluster('meshid-agent-evict-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/evictee', selectors: [`unix:uid:${uid}`] });
    let agent = await c.startAgent({ joinToken: await c.token() });
    const firstId = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
    await agent.stop();
    // Restarted with a new token: the stored SVID is used, the token is kept for re-attestation.
    agent = await c.startAgent({ joinToken: await c.token() });
    await agent.waitForLog(/join token is kept for re-attestation/);
    await c.admin.call('Agents', 'EvictAgent', { spiffe_id: firstId });
    await agent.waitForLog(/attesting again with the configured join token/);
    await agent.waitForLog(/"msg":"attested to meshid-server with a join token"/);
    await agent.waitForLog(/"msg":"in sync with meshid-server"/);
    // The agent logs the attestation just before it saves the new identity: the file may lag the line by an fsync.
    const storedId = (): string => JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
    const secondId = await until('the new agent identity on disk', () => (storedId() !== firstId ? storedId() : undefined));
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/evictee'], 'workloads are served throughout');

    await c.admin.call('Agents', 'EvictAgent', { spiffe_id: secondId });
    await agent.waitForLog(/no unused join token is configured/);
    assert.equal((await agent.healthTrailer())['meshid-agent-state'], 'reattest-required');
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/evictee'], 'cached SVIDs are still served');
  }));

test('banned: the agent stops talking to the server, logs why, and withdraws what it served', () =>
  withCluster('meshid-agent-ban-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/before-ban', selectors: [`unix:uid:${uid}`] });
    const agent = await c.startAgent({ joinToken: await c.token() });
    const id = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
    await c.admin.call('Agents', 'BanAgent', { spiffe_id: id });
    const line = await agent.waitForLog(/an operator banned this agent/);
    assert.match(line, /"level":50/, 'logged as an error');
    assert.equal((await agent.healthTrailer())['meshid-agent-state'], 'banned');
    await assert.rejects(agent.svidIds(), (err) => isMeshidError(err, 'permission_denied'), 'nothing is served any more');
    assert.doesNotMatch(agent.output(), /(lost|cannot open) the Sync stream/, 'a ban is not a connection problem to retry');
  }));

test('--insecure-bootstrap attests without a trust bundle, warns, and from then on authenticates the server', () =>
  withCluster('meshid-agent-insecure-', async (c) => {
    await c.createEntry({ spiffeId: 'spiffe://example.org/dev', selectors: [`unix:uid:${uid}`] });
    const agent = await c.startAgent({ joinToken: await c.token(), trustBundle: false, extraArgs: ['--insecure-bootstrap'] });
    assert.match(agent.output(), /WARNING: --insecure-bootstrap/);
    assert.match(agent.output(), /attesting WITHOUT authenticating the server/);
    assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/dev']);
  }));

test('--insecure-bootstrap warns once, not at every attempt while the server is out of reach (its retries are debug)', () =>
  withCluster('meshid-agent-insecure-retry-', async (c) => {
    // A port that drops every connection: the agent's Attest fails UNAVAILABLE and is retried with its backoff.
    const dropping = net.createServer((socket) => socket.destroy()).listen(0, '127.0.0.1');
    await once(dropping, 'listening');
    try {
      const agent = await c.startAgent({
        joinToken: await c.token(),
        trustBundle: false,
        extraArgs: ['--insecure-bootstrap'],
        serverAddress: `127.0.0.1:${(dropping.address() as net.AddressInfo).port}`,
        wait: false,
      });
      const attempts = () => agent.output().split('\n').filter((l) => l.includes('"msg":"insecure bootstrap: attesting WITHOUT'));
      await until('a third attempt', () => (attempts().length >= 3 ? true : undefined), 30_000);
      const warnings = attempts().filter((l) => l.includes('"level":40'));
      assert.equal(warnings.length, 1, `one warning, the retries at debug:\n${attempts().join('\n')}`);
    } finally {
      dropping.close();
    }
  }));
