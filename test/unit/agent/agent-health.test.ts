/**
 * meshid-agent's live and ready verdicts (agent-health.ts) as a table over the agent's status, and live against a
 * real Unix socket that is removed or replaced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { agentHealthProbe, type AgentHealthStatus } from '../../../src/agent/agent-health.js';
import { tempDir } from '../../support/server-kit.js';

const NOW = Date.parse('2026-06-01T00:00:00Z');
const HOUR = 3_600_000;
const SERVING: AgentHealthStatus = { state: 'synced', ready: true, agentSvidExpiresAt: NOW + HOUR, entries: 2, svids: 2, lastError: undefined };

const cases: Array<{ name: string; status: Partial<AgentHealthStatus>; reason: RegExp | undefined }> = [
  { name: 'synced, SVIDs held', status: {}, reason: undefined },
  { name: 'server unreachable, SVIDs still held', status: { state: 'disconnected', lastError: 'connect ECONNREFUSED' }, reason: undefined },
  { name: 'synced, entries just received and not signed yet', status: { svids: 0 }, reason: undefined },
  { name: 'server unreachable, one SVID of several entries still held', status: { state: 'disconnected', entries: 3, svids: 1 }, reason: undefined },
  { name: 'no entries at all (nothing registered for this node)', status: { entries: 0, svids: 0, state: 'disconnected' }, reason: undefined },
  { name: 'before the first attestation and sync', status: { state: 'attesting', ready: false, entries: 0, svids: 0, agentSvidExpiresAt: undefined }, reason: /^the agent has no SVIDs to serve yet/ },
  { name: 'banned', status: { state: 'banned', entries: 0, svids: 0 }, reason: /^meshid-server banned this agent/ },
  { name: 'asked to re-attest, or its SVID expired', status: { state: 'reattest-required' }, reason: /^the agent SVID has expired or meshid-server refuses it, and the agent has no unused join token/ },
  { name: 'agent SVID expired', status: { state: 'disconnected', agentSvidExpiresAt: NOW }, reason: /^the agent SVID has expired: .* restart it with a new join token \(meshid-server token generate\), given as --join-token-file FILE or --join-token \(join_token_file or join_token in the config\)$/ },
  {
    name: 'agent SVID expired, attesting again with its configured join token',
    status: { state: 'attesting', agentSvidExpiresAt: NOW },
    reason: /^the agent SVID has expired and the agent is attesting again with its configured join token/,
  },
  {
    name: 'state restored, no agent SVID in the data dir, attesting with the join token',
    status: { state: 'attesting', agentSvidExpiresAt: undefined },
    reason: /^the agent holds no agent SVID \(its data dir had none\) and is attesting with its configured join token/,
  },
  { name: 'every cached SVID expired while disconnected', status: { state: 'disconnected', svids: 0 }, reason: /^every SVID the agent held has expired/ },
  { name: 'every cached SVID expired while reconnecting', status: { state: 'connecting', svids: 0 }, reason: /^every SVID the agent held has expired/ },
  { name: 'a clock skew stops renewals', status: { clockProblem: 'this host\'s clock is 2h ahead of meshid-server\'s' }, reason: /^this host's clock/ },
];

for (const c of cases) {
  test(`ready: ${c.name} → ${c.reason === undefined ? '200' : '500 with the reason'}`, async () => {
    const status: AgentHealthStatus = { ...SERVING, ...c.status };
    const probe = agentHealthProbe({ socketPath: '/nonexistent', socketIno: 0, status: () => status, now: () => NOW });
    const verdict = await probe.ready();
    assert.equal(verdict.ok, c.reason === undefined, JSON.stringify(verdict.details));
    if (c.reason !== undefined) assert.match(String(verdict.details['reason']), c.reason);
    else assert.equal(verdict.details['reason'], undefined);
    assert.equal(verdict.details['state'], status.state);
  });
}

test('every ready reason that asks for a new join token names each way to give one, the file first, not --join-token alone', async () => {
  const needsToken: Array<Partial<AgentHealthStatus>> = [
    { state: 'banned', entries: 0, svids: 0 },
    { state: 'reattest-required' },
    { state: 'disconnected', agentSvidExpiresAt: NOW },
  ];
  for (const s of needsToken) {
    const status: AgentHealthStatus = { ...SERVING, ...s };
    const verdict = await agentHealthProbe({ socketPath: '/nonexistent', socketIno: 0, status: () => status, now: () => NOW }).ready();
    const reason = String(verdict.details['reason']);
    assert.match(reason, /a new join token \(meshid-server token generate\), given as --join-token-file FILE or --join-token \(join_token_file or join_token in the config\)/, `${status.state}: ${reason}`);
  }
});

test('live: 200 while the socket is the one listened on; 500 once it is removed or another file takes its place', async (t) => {
  const { dir, cleanup } = tempDir('meshid-agent-health-');
  const socketPath = path.join(dir, 'agent.sock');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.after(() => {
    server.close();
    cleanup();
  });
  const probe = agentHealthProbe({ socketPath, socketIno: fs.statSync(socketPath).ino, status: () => SERVING, now: () => NOW });
  assert.equal((await probe.live()).ok, true);
  fs.rmSync(socketPath);
  const gone = await probe.live();
  assert.equal(gone.ok, false);
  assert.match(String(gone.details['reason']), /is gone \(removed by another process\)/);
  fs.writeFileSync(socketPath, 'not a socket');
  const replaced = await probe.live();
  assert.equal(replaced.ok, false);
  assert.match(String(replaced.details['reason']), /is no longer the socket this agent listens on/);
});

test('live: 500 once another socket takes the path (a second agent, or any process binding it), though the path is still a socket', async (t) => {
  const { dir, cleanup } = tempDir('meshid-agent-health-');
  const socketPath = path.join(dir, 'agent.sock');
  const otherPath = path.join(dir, 'other.sock');
  const server = net.createServer();
  const other = net.createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  // Bound while the first still exists, so the two cannot share an inode number.
  await new Promise<void>((resolve) => other.listen(otherPath, resolve));
  t.after(() => {
    server.close();
    other.close();
    cleanup();
  });
  const probe = agentHealthProbe({ socketPath, socketIno: fs.statSync(socketPath).ino, status: () => SERVING, now: () => NOW });
  assert.equal((await probe.live()).ok, true);
  fs.renameSync(otherPath, socketPath);
  assert.ok(fs.lstatSync(socketPath).isSocket());
  const taken = await probe.live();
  assert.equal(taken.ok, false);
  assert.match(String(taken.details['reason']), /is no longer the socket this agent listens on/);
});

test('ready: a 500 carries the agent\'s last error, which says what went wrong (the reason only says what to do)', async () => {
  const lastError = 'must re-attest: agent spiffe://example.org/spire/agent/join_token/x was evicted';
  const status: AgentHealthStatus = { ...SERVING, state: 'reattest-required', lastError };
  const verdict = await agentHealthProbe({ socketPath: '/nonexistent', socketIno: 0, status: () => status, now: () => NOW }).ready();
  assert.equal(verdict.ok, false);
  assert.equal(verdict.details['last_error'], lastError);
  assert.equal(verdict.details['agent_svid_expires_at'], new Date(NOW + HOUR).toISOString());
  // A healthy agent's details carry no stale error.
  const healthy = await agentHealthProbe({ socketPath: '/nonexistent', socketIno: 0, status: () => ({ ...SERVING, state: 'disconnected', lastError: 'connect ECONNREFUSED' }), now: () => NOW }).ready();
  assert.equal(healthy.ok, true);
  assert.equal(healthy.details['last_error'], undefined);
});
