/**
 * The version each agent reports to the server (AttestRequest and SyncRequest agent_version), as `agent list` and
 * `agent show` print it: from a test client playing an agent of this or an earlier version (the protocol, refusals),
 * from real meshid-agent processes (attestation, restart), and from an in-process agent on a FakeClock (a renewal).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { meshidVersion } from '../../src/common/meshid-version.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { AGENT_MAIN, startCluster, startInProcessCluster } from '../support/cluster.js';
import { connectNode, joinToken, nodeCall, type AgentIdentity, type NodeClient } from '../support/node-api-client.js';
import { tempDir } from '../support/server-kit.js';
import { runNode, startServerProcess, type ServerProcess } from '../support/server-process.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;

/** until() for a probe that asks the server: polls every 25 ms for up to 10 s. */
async function untilAnswered<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Attests with `token` as an agent reporting `version` (undefined: as an agent of an earlier version, no field). */
async function attestReporting(server: ServerProcess, rootsPem: string, token: string, version: string | undefined): Promise<AgentIdentity> {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const client = connectNode(server, rootsPem);
  try {
    const csr = await createCsr(privateKey, publicKey);
    const res = await nodeCall<{ spiffe_id: string; svid_chain: Buffer[] }>(client, 'Attest', { join_token: token, csr, ...(version !== undefined && { agent_version: version }) });
    return { id: res.spiffe_id, chain: res.svid_chain, key: privateKey };
  } finally {
    client.close();
  }
}

/** Opens Sync with `request`; resolves with the first update's arrival (undefined) or the error the stream ends with. */
function syncOnce(client: NodeClient, request: Record<string, unknown>): Promise<grpc.ServiceError | undefined> {
  const stream = (client['Sync'] as (req: unknown) => grpc.ClientReadableStream<unknown>)(request);
  return new Promise((resolve) => {
    stream.on('data', () => {
      stream.cancel();
      resolve(undefined);
    });
    stream.on('error', (e: grpc.ServiceError) => resolve(e.code === grpc.status.CANCELLED ? undefined : e));
  });
}

const AGENT_VERSION_LINE = /^Agent version {4}: (.*)$/m;

async function shownVersion(server: ServerProcess, agentId: string): Promise<{ text: string | undefined; json: string }> {
  const text = await server.cli(['agent', 'show', '--spiffe-id', agentId]);
  assert.equal(text.code, 0, text.err);
  const json = await server.cli(['agent', 'show', '--spiffe-id', agentId, '--output', 'json']);
  assert.equal(json.code, 0, json.err);
  return { text: AGENT_VERSION_LINE.exec(text.out)?.[1], json: (JSON.parse(json.out) as { agent_version: string }).agent_version };
}

test('the server keeps what an agent reports in Attest and at each Sync open; a renewal leaves it, a Sync open reporting none (a rolled-back build) forgets it; a version too long or not printable is refused', async (t) => {
  const { dir, cleanup } = tempDir('meshid-agent-version-');
  teardown(t).after(cleanup);
  const server = await startServerProcess(dir);
  teardown(t).after(() => server.stop());
  const rootsPem = (await server.cli(['bundle', 'show'])).out;

  const agent = await attestReporting(server, rootsPem, await joinToken(server), '1.2.3+abc1234');
  assert.deepEqual(await shownVersion(server, agent.id), { text: '1.2.3+abc1234', json: '1.2.3+abc1234' });

  const client = connectNode(server, rootsPem, agent);
  teardown(t).after(() => client.close());
  // Restarted as a new build on its stored identity: it makes no Attest, its Sync tells.
  assert.equal(await syncOnce(client, { agent_version: '1.2.4+def5678' }), undefined);
  assert.deepEqual(await shownVersion(server, agent.id), { text: '1.2.4+def5678', json: '1.2.4+def5678' });
  // A renewal carries no version and must not blank it.
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  await nodeCall(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
  assert.equal((await shownVersion(server, agent.id)).text, '1.2.4+def5678');
  // Rolled back to a build that reports nothing: its Sync opens say so, and the version it no longer runs goes.
  assert.equal(await syncOnce(client, {}), undefined);
  assert.deepEqual(await shownVersion(server, agent.id), { text: undefined, json: '' });
  assert.equal(await syncOnce(client, { agent_version: '1.2.4+def5678' }), undefined);
  assert.equal((await shownVersion(server, agent.id)).text, '1.2.4+def5678');

  const longest = `1.0.0+${'a'.repeat(249)}`;
  assert.equal(longest.length, 255);
  const refused = [
    [`1.0.0+${'a'.repeat(250)}`, /agent_version is 256 characters long; at most 255 are allowed/],
    ['1.0.0\u001b[2J', /agent_version must be printable ASCII; it holds U\+001B at index 5/],
    ['1.0.0+é', /agent_version must be printable ASCII; it holds U\+00E9/],
  ] as const;
  for (const [version, message] of refused) {
    const err = await syncOnce(client, { agent_version: version });
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(version)}: ${err?.details}`);
    assert.match(err.details, message);
  }
  assert.equal((await shownVersion(server, agent.id)).text, '1.2.4+def5678', 'a refused version is not stored');
  assert.equal(await syncOnce(client, { agent_version: longest }), undefined);
  assert.equal((await shownVersion(server, agent.id)).text, longest);

  // Refused before the token is looked up: the token is not spent, and works with a version the server takes.
  const token = await joinToken(server);
  const attestClient = connectNode(server, rootsPem);
  teardown(t).after(() => attestClient.close());
  const { privateKey: k, publicKey: p } = generateKeyPair('ec-p256');
  await assert.rejects(
    nodeCall(attestClient, 'Attest', { join_token: token, csr: await createCsr(k, p), agent_version: '1.0.0\n' }),
    (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /agent_version must be printable ASCII; it holds U\+000A/.test(e.details),
  );
  const second = await attestReporting(server, rootsPem, token, '1.0.0');
  assert.equal((await shownVersion(server, second.id)).text, '1.0.0');

  // An agent of an earlier version: no line, and the empty agent_version of spire-server's JSON.
  const old = await attestReporting(server, rootsPem, await joinToken(server), undefined);
  assert.deepEqual(await shownVersion(server, old.id), { text: undefined, json: '' });
  const list = await server.cli(['agent', 'list']);
  assert.equal(list.code, 0, list.err);
  assert.equal([...list.out.matchAll(new RegExp(AGENT_VERSION_LINE, 'gm'))].length, 2, list.out);
  const listed = JSON.parse((await server.cli(['agent', 'list', '--output', 'json'])).out) as { agents: Array<{ id: { path: string }; agent_version: string }> };
  const byId = new Map(listed.agents.map((a) => [`spiffe://example.org${a.id.path}`, a.agent_version]));
  assert.deepEqual([byId.get(agent.id), byId.get(second.id), byId.get(old.id)], [longest, '1.0.0', '']);
});

test('a meshid-agent process reports its --version: agent show and list print it after attestation, and again after a restart on its stored identity', async (t) => {
  const cluster = await startCluster('meshid-agent-version-');
  teardown(t).after(() => cluster.cleanup());
  const printed = await runNode(AGENT_MAIN, ['--version']);
  const version = /^meshid-agent (\S+)\n$/.exec(printed.out)![1]!;
  const cli = (args: string[]) => runNode(AGENT_MAIN.replace('meshid-agent', 'meshid-server'), [...args, '--admin-socket', cluster.server.adminSocket]);
  let agent = await cluster.startAgent({ joinToken: await cluster.token() });
  const agentId = await untilAnswered('the agent attested', async () => (await cluster.admin.call('Agents', 'ListAgents', {})).agents?.[0]?.spiffe_id);

  const check = async (): Promise<void> => {
    const show = await cli(['agent', 'show', '--spiffe-id', agentId]);
    assert.equal(AGENT_VERSION_LINE.exec(show.out)?.[1], version, show.out + show.err);
    const list = await cli(['agent', 'list']);
    assert.equal(AGENT_VERSION_LINE.exec(list.out)?.[1], version, list.out + list.err);
    assert.equal((JSON.parse((await cli(['agent', 'show', '--spiffe-id', agentId, '--output', 'json'])).out) as { agent_version: string }).agent_version, version);
    const listed = JSON.parse((await cli(['agent', 'list', '--output', 'json'])).out) as { agents: Array<{ agent_version: string }> };
    assert.deepEqual(listed.agents.map((a) => a.agent_version), [version]);
  };
  await check();

  await agent.stop();
  agent = await cluster.startAgent();
  await agent.waitForLog(/in sync with meshid-server/);
  await check();
  assert.equal((await cluster.admin.call('Agents', 'ListAgents', {})).agents?.length, 1, 'the same agent: no new attestation');
});

test('an agent SVID renewal keeps the version the agent reported', async (t) => {
  // 20 hours back: every certificate lies inside the real-time window the TLS layer checks (agent-log-lines.test.ts).
  const clock = new FakeClock(Date.now() - 20 * HOUR);
  const cluster = await startInProcessCluster(clock, 'meshid-agent-version-renewal-');
  teardown(t).after(() => cluster.cleanup());
  // random 0.5: no jitter, the renewal falls at half-life.
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, 'agent-socket', 'api.sock'), data_dir: path.join(cluster.dir, 'agent-data') },
    { clock, random: () => 0.5 },
  );
  await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));
  const agentId = agent.status().agentId!;
  const stored = async (): Promise<{ version: string | undefined; serial: string | undefined }> => {
    const a = await cluster.admin.call('Agents', 'GetAgent', { spiffe_id: agentId });
    return { version: a.agent_version, serial: a.cert_serial };
  };
  const before = await stored();
  assert.equal(before.version, meshidVersion());

  const expiresBefore = agent.status().agentSvidExpiresAt!;
  clock.advance(12 * HOUR + 60_000);
  await until('the agent SVID renewal', () => (agent.status().agentSvidExpiresAt! > expiresBefore ? true : undefined));
  const after = await untilAnswered('the renewal recorded', async () => {
    const s = await stored();
    return s.serial !== before.serial ? s : undefined;
  });
  assert.equal(after.version, meshidVersion());
});
