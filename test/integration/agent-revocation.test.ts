/**
 * Revocation against a real meshid-server process: what an operator takes away (an entry deleted, its selectors
 * narrowed) must not come back from the agent's data dir. The agent runs in this process on a FakeClock that the
 * test never moves after start-up, so a save that waits for a timer has not happened when the data dir is copied:
 * the copy is what kill -9 at that moment would leave. An agent process restarted on that copy, with the server
 * stopped, serves from it alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { FakeClock } from '../../src/common/clock.js';
import { isMeshidError } from '../../src/common/errors.js';
import { startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';
import { event } from '../support/event.js';
import { teardown } from '../support/teardown.js';

const uid = process.getuid!();

/** Waits for something the agent does over the network (an event, not time logic), polling briefly. */
async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function servedIds(socketPath: string): Promise<string[]> {
  const client = connectWorkloadApi(socketPath);
  try {
    return ((await client.fetchX509Svid()).svids ?? []).map((s) => s.spiffe_id!).sort();
  } catch {
    return [];
  } finally {
    client.close();
  }
}

interface Running {
  cluster: Cluster;
  agent: MeshidAgent;
  clock: FakeClock;
  socketPath: string;
  dataDir: string;
}

/** A server process and an in-process agent on a FakeClock, synced and serving `spiffeIds` to this process. */
async function startServing(t: { after: (fn: () => Promise<void>) => void }, prefix: string, spiffeIds: readonly string[]): Promise<Running & { entryIds: string[] }> {
  const cluster = await startCluster(prefix);
  teardown(t).after(() => cluster.cleanup());
  const entryIds: string[] = [];
  for (const spiffeId of spiffeIds) entryIds.push(await cluster.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`] }));
  // Ahead of the real clock, so certificates the server signs from now on are already valid on the agent's.
  const clock = new FakeClock(Date.now() + 5 * 60_000);
  const socketDir = path.join(cluster.dir, 'agent-socket');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  const socketPath = path.join(socketDir, 'api.sock');
  const dataDir = path.join(cluster.dir, 'agent-data');
  const agent = await cluster.startInProcessAgent({ join_token: await cluster.token(), socket_path: socketPath, data_dir: dataDir }, { clock });
  await until('every SVID served', async () => (await servedIds(socketPath)).join() === [...spiffeIds].sort().join());
  // The coalesced save of the first sync and its SVIDs. The first snapshot is written off the event loop (libuv's
  // pool), so it is on disk some time after the timer fired: on a loaded machine, after this function returned.
  clock.advance(1000);
  await until('the first save of every SVID on disk', async () => storedSvidKeysSoFar(dataDir).length >= spiffeIds.length);
  return { cluster, agent, clock, socketPath, dataDir, entryIds };
}

/** The data dir as kill -9 would leave it now, and an agent process started on it with the server stopped. */
async function crashAndRestartWithoutServer(r: Running): Promise<AgentProcess> {
  const crashed = path.join(r.cluster.dir, 'crashed-data');
  fs.cpSync(r.dataDir, crashed, { recursive: true });
  fs.chmodSync(crashed, 0o700);
  await r.cluster.server.stop();
  const restarted = await r.cluster.startAgent({ name: 'restarted', dataDir: crashed });
  await restarted.waitForLog(/cannot open the Sync stream/);
  return restarted;
}

test('a deleted entry is in the data dir before a workload sees it gone: kill -9 then and a restart with the server down do not bring it back', async (t) => {
  const r = await startServing(t, 'meshid-revoke-delete-', ['spiffe://example.org/keep', 'spiffe://example.org/revoked']);
  await r.cluster.deleteEntry(r.entryIds[1]!);
  await until('the workload no longer served the deleted entry', async () => (await servedIds(r.socketPath)).join() === 'spiffe://example.org/keep');
  const restarted = await crashAndRestartWithoutServer(r);
  assert.deepEqual(await servedIds(restarted.socketPath), ['spiffe://example.org/keep']);
});

test('narrowed selectors are in the data dir before a workload sees them: kill -9 then and a restart with the server down do not widen them again', async (t) => {
  const r = await startServing(t, 'meshid-revoke-narrow-', ['spiffe://example.org/keep', 'spiffe://example.org/narrowed']);
  // The entry now needs a second selector this process does not have.
  await r.cluster.admin.call('Entries', 'UpdateEntry', {
    entry: { id: r.entryIds[1], selectors: [{ type: 'unix', value: `uid:${uid}` }, { type: 'unix', value: 'gid:4242424' }] },
    mask: ['selectors'],
  });
  await until('the workload no longer served the narrowed entry', async () => (await servedIds(r.socketPath)).join() === 'spiffe://example.org/keep');
  const restarted = await crashAndRestartWithoutServer(r);
  assert.deepEqual(await servedIds(restarted.socketPath), ['spiffe://example.org/keep']);
});

test('a deletion is saved alone, not with the changes waiting for their coalesced save: kill -9 then and a restart with the server down serve what was saved before, less the deleted entry', async (t) => {
  const r = await startServing(t, 'meshid-revoke-alone-', ['spiffe://example.org/keep', 'spiffe://example.org/revoked']);
  // Served, but its save waits for a clock the test holds still.
  await r.cluster.createEntry({ spiffeId: 'spiffe://example.org/unsaved', selectors: [`unix:uid:${uid}`] });
  await until('the new entry served', async () => (await servedIds(r.socketPath)).length === 3);
  await r.cluster.deleteEntry(r.entryIds[1]!);
  await until('the workload no longer served the deleted entry', async () => !(await servedIds(r.socketPath)).includes('spiffe://example.org/revoked'));
  const restarted = await crashAndRestartWithoutServer(r);
  assert.deepEqual(await servedIds(restarted.socketPath), ['spiffe://example.org/keep']);
});

test('a banned agent withdraws what it served: open streams end PERMISSION_DENIED, its own SVID and key leave the data dir, and a restart with the server down serves nothing', async (t) => {
  const cluster = await startCluster('meshid-revoke-ban-');
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/on-banned-node', selectors: [`unix:uid:${uid}`] });
  const agent = await cluster.startAgent({ joinToken: await cluster.token() });
  assert.deepEqual(await servedIds(agent.socketPath), ['spiffe://example.org/on-banned-node']);
  const client = connectWorkloadApi(agent.socketPath, { timeoutMs: 20_000 });
  teardown(t).after(() => client.close());
  const watch = client.watchX509Svids();
  assert.equal((await event('the first FetchX509SVID message', watch.next())).value?.svids?.length, 1);

  const id = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
  await cluster.admin.call('Agents', 'BanAgent', { spiffe_id: id });
  await agent.waitForLog(/an operator banned this agent/);
  // Refused, not answered empty, and refused as no identity rather than failed: servedIds() would read any failure
  // (an agent that crashed on the ban, say) as nothing served.
  const fresh = connectWorkloadApi(agent.socketPath);
  teardown(t).after(() => fresh.close());
  await assert.rejects(fresh.fetchX509Svid(), (err) => isMeshidError(err, 'permission_denied'), 'a new call gets nothing');
  await assert.rejects(event('the open stream ending on the ban', watch.next()), (err) => isMeshidError(err, 'permission_denied'), 'the open stream ends');

  // As SPIRE's agent does: the agent SVID and its key leave the data dir, since nothing can use them again.
  await agent.waitForLog(/the agent SVID and its key are removed from the data dir/);
  assert.ok(!fs.existsSync(path.join(agent.dataDir, 'agent-svid.json')), 'agent-svid.json is gone');

  await agent.stop('SIGKILL');
  await cluster.server.stop();
  const restarted = await cluster.startAgent({ name: 'restarted', dataDir: agent.dataDir, wait: false });
  assert.equal(await restarted.exitCode(), 1, 'nothing comes back from the data dir');
  assert.match(restarted.output(), /the agent has no SVID in \S+ and no join token: start it with a new join token \(meshid-server token generate\), given as --join-token-file FILE/);
});

/** storedSvidKeys while a save may be under way: a journal line still being written reads as not there yet. */
function storedSvidKeysSoFar(dataDir: string): string[] {
  try {
    return storedSvidKeys(dataDir);
  } catch (err) {
    if (err instanceof SyntaxError) return [];
    throw err;
  }
}

/** The workload SVID keys (PKCS#8 DER, base64 as stored) in the data dir's state: the snapshot and its journals. */
function storedSvidKeys(dataDir: string): string[] {
  const keys: string[] = [];
  const collect = (doc: { svids?: { private_key?: string }[] }): void => {
    for (const s of doc.svids ?? []) if (s.private_key !== undefined) keys.push(s.private_key);
  };
  for (const name of fs.readdirSync(dataDir)) {
    if (name === 'state.json') collect(JSON.parse(fs.readFileSync(path.join(dataDir, name), 'utf8')));
    if (/^state\.\d+\.journal$/.test(name)) {
      for (const line of fs.readFileSync(path.join(dataDir, name), 'utf8').split('\n')) if (line !== '') collect(JSON.parse(line.slice(9)));
    }
  }
  return keys;
}

test('a ban takes the withdrawn SVIDs\' keys off the disk at once: no file of the data dir holds them, as DER, base64 or PEM', async (t) => {
  const r = await startServing(t, 'meshid-revoke-ban-keys-', ['spiffe://example.org/banned-a', 'spiffe://example.org/banned-b']);
  const keys = storedSvidKeys(r.dataDir);
  assert.ok(keys.length >= 2, 'the SVIDs and their keys were saved before the ban');

  const id = JSON.parse(fs.readFileSync(path.join(r.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
  await r.cluster.admin.call('Agents', 'BanAgent', { spiffe_id: id });
  await until('the ban withdrew what the agent served', async () => r.agent.status().state === 'banned');

  // The clock stands still: only what the ban saved at once is on disk, as kill -9 now would leave it.
  const files = fs.readdirSync(r.dataDir);
  assert.ok(!files.includes('agent-svid.json'), 'the agent SVID and its key are removed too');
  for (const key of keys) {
    const der = Buffer.from(key, 'base64');
    // A PEM body is the same base64, broken into lines of 64.
    const pemLine = Buffer.from(der.toString('base64').slice(0, 64));
    for (const name of files) {
      const bytes = fs.readFileSync(path.join(r.dataDir, name));
      assert.ok(!bytes.includes(der) && !bytes.includes(pemLine), `${name} still holds a withdrawn SVID key`);
    }
  }
  assert.deepEqual(storedSvidKeys(r.dataDir), []);
});
