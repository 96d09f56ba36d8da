/**
 * A join-token agent's ID is random per attestation: entries parented directly to it match no agent once it has gone
 * (evicted, banned, or pruned when its SVID expired; a host whose agent lost its data dir comes back under another
 * ID). The operator is told how many and what to do. In-process server on a FakeClock (an hour behind real time, so
 * the real-clock TLS of the attestations accepts its certificates); the CLI runs as the meshid-server process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../../src/common/clock.js';
import { createLogger } from '../../src/common/log.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { attestWithToken } from '../support/node-api-client.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';

const D = 24 * 3_600_000;
const clock = new FakeClock(Date.now() - 3_600_000);
const logged: Array<{ level: number; msg: string; agent?: string; entries?: number }> = [];
let cluster: Cluster & { meshidServer: MeshidServer };

before(async () => {
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged.push(JSON.parse(chunk.toString()) as (typeof logged)[number]);
      done();
    },
  });
  cluster = await startInProcessCluster(clock, 'meshid-orphaned-entries-', {}, createLogger({ name: 'meshid-server', destination }));
});

after(async () => {
  await cluster?.cleanup();
});

async function attest(): Promise<string> {
  return (await attestWithToken({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, await cluster.token())).id;
}

function cli(args: string[]) {
  return runNode(SERVER_MAIN, [...args, '--admin-socket', cluster.server.adminSocket]);
}

async function parentEntries(agentId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await cluster.createEntry({ spiffeId: `spiffe://example.org/w-${agentId.slice(-8)}-${i}`, parentId: agentId, selectors: [`unix:uid:${1000 + i}`] });
  }
}

test('agent evict and agent ban say on stderr how many entries are parented directly to the agent, and how to move them', async () => {
  const [evicted, banned, bare] = [await attest(), await attest(), await attest()];
  await parentEntries(evicted, 2);
  await parentEntries(banned, 1);

  const evict = await cli(['agent', 'evict', '--spiffe-id', evicted]);
  assert.equal(evict.code, 0, evict.err);
  assert.equal(evict.out, 'Agent evicted successfully\n');
  assert.match(evict.err, new RegExp(`^Warning: 2 registration entries are parented directly to ${evicted}, and match no agent from now on: `));
  assert.ok(evict.err.includes(`meshid-server entry show --parent-id ${evicted}`), evict.err);
  assert.match(evict.err, /node alias \(meshid-server entry create --node/);
  // The move the warning names is a command that runs: its placeholders filled in, it moves an entry.
  const move = /meshid-server (entry update .*<entry ID>.*<new agent ID>) \(/.exec(evict.err);
  assert.ok(move, evict.err);
  const [entryId] = (await cli(['entry', 'show', '--parent-id', evicted, '--output', 'json'])).out.match(/e-[0-9a-f]{16}/) ?? [];
  assert.ok(entryId, 'entry show --parent-id lists the entries left behind');
  const newcomer = await attest();
  const moved = await cli(move[1]!.replace('<entry ID>', entryId).replace('<new agent ID>', newcomer).split(' '));
  assert.equal(moved.code, 0, `the suggested "${move[1]}" fails: ${moved.err}`);
  assert.match(moved.out, new RegExp(`^Parent ID +: ${newcomer}$`, 'm'));

  const ban = await cli(['agent', 'ban', '--spiffe-id', banned, '--output', 'json']);
  assert.equal(ban.code, 0, ban.err);
  assert.deepEqual(JSON.parse(ban.out), {}, "stdout stays one JSON document: spire-server's, BanAgent's empty answer");
  assert.match(ban.err, new RegExp(`^Warning: 1 registration entry is parented directly to ${banned}, and no agent gets it while the agent is banned`));

  const quiet = await cli(['agent', 'evict', '--spiffe-id', bare]);
  assert.equal(quiet.code, 0, quiet.err);
  assert.equal(quiet.err, '', 'no warning for an agent no entry is parented to');
});

test('the housekeeping prune of an agent whose SVID expired logs how many entries were parented to it', async () => {
  const [lost, bare] = [await attest(), await attest()];
  await parentEntries(lost, 3);
  clock.advance(2 * D);
  await cluster.meshidServer.housekeeping(clock);

  const warnings = logged.filter((l) => l.level === 40);
  const aboutLost = warnings.find((l) => l.agent === lost);
  assert.ok(aboutLost, `a warning names the pruned agent: ${JSON.stringify(warnings.map((w) => w.msg))}`);
  assert.equal(aboutLost.entries, 3);
  assert.match(aboutLost.msg, new RegExp(`^3 registration entries are parented directly to ${lost}, and match no agent now that the agent was removed \\(its SVID expired`));
  assert.match(aboutLost.msg, /entry update --entry-id <entry ID> --parent-id <new agent ID>/);
  assert.ok(!warnings.some((l) => l.agent === bare), 'no warning for a pruned agent no entry is parented to');
  assert.ok(logged.some((l) => l.msg === 'housekeeping removed expired records'), 'the agents were pruned');
});
