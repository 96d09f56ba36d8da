/**
 * An agent whose server was rebuilt while it was away: the same address and trust domain, but a new data dir, so a new
 * root that never signed the agent SVID. Once the agent authenticates the server again (the current bundle passed
 * with --trust-bundle), the server's TLS layer does not verify the agent's SVID, and every call was answered "needs the
 * agent SVID". That is no outage to retry for ever: the server says the agent must attest again, and the agent uses a
 * new join token given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Cluster, startCluster, startServerProcess } from '../support/cluster.js';

const uid = process.getuid!();

/** Replaces the cluster's server by one on a new data dir (a new root) at the same address, and writes its bundle. */
async function rebuildServer(c: Cluster): Promise<void> {
  const address = c.server.address();
  await c.server.stop();
  fs.renameSync(path.join(c.dir, 'server', 'data'), path.join(c.dir, 'server', 'data.lost'));
  await startServerProcess(c, address);
  await c.writeBundle();
}

test('a server rebuilt with a new root: the agent says it needs a new join token instead of retrying for ever, and attests with one given', async () => {
  const c = await startCluster('meshid-agent-server-rebuilt-');
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/before-rebuild', selectors: [`unix:uid:${uid}`] });
    const first = await c.startAgent({ joinToken: await c.token() });
    assert.deepEqual(await first.svidIds(), ['spiffe://example.org/before-rebuild']);
    await first.stop();

    await rebuildServer(c);
    await c.createEntry({ spiffeId: Cluster.nodeAlias, parentId: 'spiffe://example.org/meshid/server', selectors: ['meshid:datacenter:east'] });
    await c.createEntry({ spiffeId: 'spiffe://example.org/after-rebuild', selectors: [`unix:uid:${uid}`] });

    // The current bundle, no token: the server is authenticated, the agent SVID is not.
    const stuck = await c.startAgent({ name: 'stuck', dataDir: first.dataDir, wait: false });
    const line = await stuck.waitForLog(/no unused join token is configured/);
    assert.match(line, /"level":50/, 'logged as an error');
    assert.match(line, /SVID was signed by an intermediate CA this server does not hold \(the server's data dir was replaced/, 'the reason names what the server refused');
    assert.equal((await stuck.healthTrailer())['meshid-agent-state'], 'reattest-required');
    assert.deepEqual(await stuck.svidIds(), ['spiffe://example.org/before-rebuild'], 'cached SVIDs are still served');
    await stuck.stop();

    // A token another host has spent: the re-attestation is refused, and the agent says what to do.
    const spent = await c.token();
    await (await c.startAgent({ name: 'other', joinToken: spent })).stop();
    const refused = await c.startAgent({ name: 'refused', dataDir: first.dataDir, joinToken: spent, wait: false });
    const failed = await refused.waitForLog(/attesting again with the configured join token failed/);
    assert.match(failed, /"level":50/);
    assert.match(failed, /restart the agent with a new join token \(meshid-server token generate\), given as --join-token-file FILE or --join-token \(join_token_file or join_token in the config\)/);
    assert.match(failed, /already used/, 'the reason is the server\'s');
    await refused.stop();

    // A new token: the stored SVID is tried first, refused, and the token attests the host to the new server.
    const again = await c.startAgent({ name: 'again', dataDir: first.dataDir, joinToken: await c.token(), wait: false });
    await again.waitForLog(/"msg":"attested to meshid-server with a join token"/);
    await again.waitForLog(/"msg":"in sync with meshid-server"/);
    await again.waitHealthy();
    const client = again.client(10_000);
    try {
      // The new server's entries replace the old one's (the first X.509 message waits for SVIDs being signed).
      let ids: string[] = [];
      for (let i = 0; i < 100; i++) {
        ids = ((await client.fetchX509Svid()).svids ?? []).map((s) => s.spiffe_id!);
        if (ids.length === 1 && ids[0] === 'spiffe://example.org/after-rebuild') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(ids, ['spiffe://example.org/after-rebuild']);
    } finally {
      client.close();
    }
    const stored = JSON.parse(fs.readFileSync(path.join(first.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
    const listed = await c.admin.call('Agents', 'ListAgents', {});
    assert.ok(listed.agents?.some((a) => a.spiffe_id === stored), 'the new server knows the agent by the identity it saved');
  } finally {
    await c.cleanup();
  }
});
