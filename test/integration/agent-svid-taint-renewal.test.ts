/**
 * `ca taint` of the authority that signed an agent's own SVID, against a real meshid-server process and a real agent
 * process: the agent hears of the taint over Sync and renews its agent SVID at once, under the replacement, instead
 * of at its half-life (12 h of a 24 h SVID). Tainting says the key may be compromised; an agent SVID left under it
 * is what `ca revoke` would then cut off. The SVID is read from the agent's data dir (agent-svid.json, written at
 * every renewal) and judged by openssl.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { startClusterWithAgent } from '../support/cluster.js';
import { opensslVerify } from '../support/openssl.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { until } from '../support/until.js';

const uid = process.getuid!();

/** The agent SVID's chain as the agent stored it (leaf first); its key is not read. */
function storedChain(dataDir: string): Buffer[] {
  const doc = JSON.parse(fs.readFileSync(path.join(dataDir, 'agent-svid.json'), 'utf8')) as { svid_chain: string[] };
  return doc.svid_chain.map((c) => Buffer.from(c, 'base64'));
}

test('ca taint of the intermediate, then of the root, that signed the agent SVID: the agent renews it at once under their replacements, long before its half-life', async (t) => {
  const { cluster, agent } = await startClusterWithAgent('meshid-agent-svid-taint-', ['spiffe://example.org/w']);
  t.after(() => cluster.cleanup());
  assert.deepEqual(await agent.svidIds(), ['spiffe://example.org/w']);
  const agentId = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
  const authorities = async () => (await cluster.admin.call('Authorities', 'ListAuthorities', {})).authorities ?? [];
  const active = async (kind: string) => (await authorities()).find((a) => a.kind === kind && a.state === 'active' && (kind === 'root' || a.datacenter === 'east'))!;
  const signedBy = async () => {
    const shown = await runNode(SERVER_MAIN, ['agent', 'show', '--spiffe-id', agentId, '--admin-socket', cluster.server.adminSocket]);
    return /^Signed by\s*:\s*(\S+)$/m.exec(shown.out)?.[1];
  };
  const bundleRoots = async () => ((await cluster.admin.call('Bundles', 'GetBundle', {})).x509_authorities ?? []).map((b) => Buffer.from(b));

  /** Taints `authorityId`, waits for the stored agent SVID to change, and checks the new one against the bundle. */
  const taintAndWaitForRenewal = async (authorityId: string) => {
    const before = storedChain(agent.dataDir);
    const old = parseCertificate(before[0]!);
    await cluster.admin.call('Authorities', 'TaintAuthority', { id: authorityId });
    const after = await until('the agent SVID renewed in the data dir', () => {
      const chain = storedChain(agent.dataDir);
      return chain[0]!.equals(before[0]!) ? undefined : chain;
    }, 30_000);
    // Renewed for the taint, not on its schedule: the old SVID was nowhere near its half-life.
    assert.ok(Date.now() < old.notBefore + (old.notAfter - old.notBefore) / 2, 'the renewal came before the old SVID\'s half-life');
    const leaf = parseCertificate(after[0]!);
    assert.ok(leaf.uriSans.includes(agentId), 'the same agent, renewed (not attested again)');
    const verified = opensslVerify({ roots: await bundleRoots(), intermediates: after.slice(1), leaf: after[0]!, purpose: 'sslclient' });
    assert.ok(verified.ok, `the renewed agent SVID verifies against the bundle: ${verified.output}`);
    return { before, after, leaf };
  };

  // The intermediate: the new SVID is signed by its replacement under the same root, not by the tainted key.
  const intermediate = await active('intermediate');
  assert.equal(parseCertificate(storedChain(agent.dataDir)[1]!).fingerprintSha256, intermediate.fingerprint, 'the agent SVID is signed by the active intermediate');
  assert.equal(await signedBy(), intermediate.id);
  const first = await taintAndWaitForRenewal(intermediate.id!);
  const taintedIntermediate = parseCertificate(first.before[1]!);
  assert.notEqual(first.leaf.authorityKeyId, taintedIntermediate.subjectKeyId, 'not signed by the tainted intermediate');
  const successor = await active('intermediate');
  assert.notEqual(successor.id, intermediate.id);
  assert.equal(parseCertificate(first.after[1]!).fingerprintSha256, successor.fingerprint, 'signed by the intermediate that replaced it');
  assert.equal(await signedBy(), successor.id, 'the server records the renewed SVID as signed by the replacement');

  // The root: the new SVID chains to the new root, through an intermediate the tainted root did not sign.
  const root = await active('root');
  const second = await taintAndWaitForRenewal(root.id!);
  const taintedRootKey = parseCertificate(first.after[1]!).authorityKeyId;
  for (const cert of second.after.slice(1)) assert.notEqual(parseCertificate(cert).authorityKeyId, taintedRootKey, 'nothing in the new chain is signed by the tainted root');
  const newRoot = (await bundleRoots()).map((b) => parseCertificate(b)).find((c) => c.subjectKeyId === parseCertificate(second.after[1]!).authorityKeyId);
  assert.ok(newRoot !== undefined && newRoot.fingerprintSha256 === (await active('root')).fingerprint, 'its intermediate is signed by the new active root');
  const withoutTainted = (await bundleRoots()).filter((b) => parseCertificate(b).subjectKeyId !== taintedRootKey);
  const verified = opensslVerify({ roots: withoutTainted, intermediates: second.after.slice(1), leaf: second.after[0]!, purpose: 'sslclient' });
  assert.ok(verified.ok, `the renewed agent SVID verifies without the tainted root: ${verified.output}`);
  // Still synced under its renewed SVID: an entry created now is served.
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/after-taint', selectors: [`unix:uid:${uid}`] });
  await until('the entry created after the taints to be served', async () => ((await agent.svidIds().catch((): string[] => [])).includes('spiffe://example.org/after-taint') ? true : undefined), 30_000);
});
