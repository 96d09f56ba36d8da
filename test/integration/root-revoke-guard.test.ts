/**
 * `ca revoke` of a tainted root against a real meshid-server process and real agent processes: the server checks
 * agents' client certificates against the bundle, so revoking a root cuts off every agent still signed under it.
 * The revoke is refused while such an agent is attested, and --force goes on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { until } from '../support/until.js';

const uid = process.getuid!();

test('ca revoke of a tainted root is refused while a stopped agent is still on it, not for the live one that moved; --force goes on and the live agent keeps syncing', async (t) => {
  const cluster = await startCluster('meshid-revoke-guard-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/before', selectors: [`unix:uid:${uid}`] });
  const live = await cluster.startAgent({ name: 'live', joinToken: await cluster.token() });
  const listAgents = async () => (await cluster.admin.call('Agents', 'ListAgents', {})).agents ?? [];
  const liveId = (await listAgents())[0]!.spiffe_id!;
  const gone = await cluster.startAgent({ name: 'gone', joinToken: await cluster.token() });
  const goneId = (await listAgents()).map((a) => a.spiffe_id!).find((id) => id !== liveId)!;
  await gone.stop('SIGKILL');

  const authorities = async () => (await cluster.admin.call('Authorities', 'ListAuthorities', {})).authorities ?? [];
  const root = (await authorities()).find((a) => a.kind === 'root' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: root.id! });
  const revoke = (...extra: string[]) => runNode(SERVER_MAIN, ['ca', 'revoke', '--id', root.id!, '--admin-socket', cluster.server.adminSocket, ...extra]);

  // The live agent learns of the taint over Sync and renews onto the new root; until then it is named too.
  const refused = await until('the refusal to name only the stopped agent', async () => {
    const r = await revoke();
    assert.equal(r.code, 1, `refused while an agent is on the root: ${r.out}`);
    return r.err.includes(liveId) ? undefined : r;
  }, 30_000);
  assert.match(refused.err, new RegExp(`^Error: FailedPrecondition: revoking root ${root.id} now would cut off 1 agent\\(s\\)`));
  assert.ok(refused.err.includes(`${goneId} (still on this root)`), refused.err);
  assert.match(refused.err, /--force/);
  assert.equal((await cluster.admin.call('Bundles', 'GetBundle', {})).x509_authorities?.length, 2, 'the refused revoke changed nothing');
  // Where an operator sees who signed each agent's SVID: the stopped one is on the tainted intermediate, the live one
  // on its successor under the new root.
  const intermediates = (await authorities()).filter((a) => a.kind === 'intermediate' && a.datacenter === 'east');
  const signer = async (id: string) => {
    const shown = await runNode(SERVER_MAIN, ['agent', 'show', '--spiffe-id', id, '--admin-socket', cluster.server.adminSocket]);
    return /^Signed by\s*:\s*(\S+)$/m.exec(shown.out)?.[1];
  };
  const goneSigner = await signer(goneId);
  const liveSigner = await signer(liveId);
  assert.equal(intermediates.find((a) => a.id === goneSigner)?.state, 'tainted');
  assert.equal(intermediates.find((a) => a.id === liveSigner)?.state, 'active');

  const forced = await revoke('--force');
  assert.equal(forced.code, 0, forced.err);
  assert.match(forced.out, new RegExp(`^Authority ${root.id} is revoked\\.`));
  assert.equal((await cluster.admin.call('Bundles', 'GetBundle', {})).x509_authorities?.length, 1, 'only the new root is published');

  // What the guard judged safe is: the live agent still syncs with the server, whose SVID is now on the new root.
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/after', selectors: [`unix:uid:${uid}`] });
  await until('the live agent to serve an entry created after the revoke', async () => {
    const client = live.client();
    try {
      const ids = ((await client.fetchX509Svid()).svids ?? []).map((s) => s.spiffe_id);
      return ids.includes('spiffe://example.org/after') ? true : undefined;
    } catch {
      return undefined;
    } finally {
      client.close();
    }
  }, 30_000);
});
