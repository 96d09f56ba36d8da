/**
 * The agent's join token file (join_token_file, --join-token-file) as operators fill it: with what
 * `meshid-server token generate` printed, saved whole by `token generate > file`. Real server and agent processes; the
 * token is printed by the real CLI. A file holding something other than one token is refused at start, naming the
 * file and not its content, rather than sent whole and refused by the server as a spent token.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, type Cluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';

const ID = 'spiffe://example.org/token-file-workload';
let cluster: Cluster;

before(async () => {
  cluster = await startCluster('meshid-join-token-file-');
  await cluster.createEntry({ spiffeId: ID, selectors: [`unix:uid:${process.getuid!()}`] });
});

after(async () => {
  await cluster?.cleanup();
});

/**
 * All `meshid-server token generate` prints, its stdout then its stderr: what `token generate > file 2>&1` leaves, and
 * what `> file` left before its expiry and datacenter lines moved to stderr.
 */
async function generated(): Promise<string> {
  const r = await runNode(SERVER_MAIN, ['token', 'generate', '--datacenter', 'east', '--admin-socket', cluster.server.adminSocket]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^Expires at: /, 'the file holds more than the Token: line');
  return r.out + r.err;
}

test("an agent whose join token file holds all token generate printed (stdout and stderr) attests with the token on its Token: line", async () => {
  const file = path.join(cluster.dir, 'generated-token');
  fs.writeFileSync(file, await generated(), { mode: 0o600 });
  const agent = await cluster.startAgent({ name: 'generated', extraArgs: ['--join-token-file', file] });
  const client = agent.client(10_000);
  try {
    assert.deepEqual((await client.fetchX509Svid()).svids.map((s) => s.spiffe_id), [ID]);
  } finally {
    client.close();
  }
});

test('an agent whose join token file holds two tokens gives up at start naming the file, and shows neither token', async () => {
  const tokens = [await generated(), await generated()].map((out) => /^Token: (\S+)$/m.exec(out)![1]!);
  const file = path.join(cluster.dir, 'two-tokens');
  fs.writeFileSync(file, `${tokens.join('\n')}\n`, { mode: 0o600 });
  const agent = await cluster.startAgent({ name: 'two-tokens', extraArgs: ['--join-token-file', file], wait: false });
  assert.equal(await agent.exitCode(), 1);
  assert.match(agent.output(), new RegExp(`the join token file ${file} holds more than a join token .*: it must hold the join token alone`));
  for (const token of tokens) assert.equal(agent.output().includes(token.slice(0, 12)), false, 'the agent shows no token');
});
