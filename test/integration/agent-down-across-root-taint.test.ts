/**
 * An agent that was down while the root was tainted comes back after the server SVID's half-life: it holds only the
 * tainted root (it never heard of the replacement), so it can reach the server only while the server SVID still
 * chains to the tainted root. README: "one still named is down or cannot reach the server. Wait for it". Found by the
 * CA lifecycle model (test/integration/ca-lifecycle-model.test.ts, seed 5): the server SVID moved to the new root at
 * its half-life and the agent was stranded, refusing the server's certificate ("not a trusted root") for good.
 *
 * In-process server and agent on one FakeClock, started behind real time; judgeTlsOnClock makes node:tls judge
 * validity on it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { parseCertificate, verifyChain } from '../../src/common/x509/certificate.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { advanceUntil } from '../support/advance-until.js';
import { startInProcessCluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';

const HOUR = 3_600_000;
const ID = 'spiffe://example.org/down-across-taint/a';

test('an agent down while the root was tainted, started again after the server SVID\'s half-life, reconnects without a new join token and moves its workloads off the tainted root', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  t.after(judgeTlsOnClock(clock));
  const cluster = await startInProcessCluster(clock, 'meshid-down-across-taint-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: ID, selectors: [`unix:uid:${process.getuid!()}`] });
  const raw = { socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') };
  let agent = await cluster.startInProcessAgent({ ...raw, join_token: await cluster.token() }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 1);
  assert.equal(agent.status().state, 'synced');
  await agent.stop();

  const tainted = cluster.meshidServer.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: tainted.id });
  // Past the server SVID's half-life (24 h SVIDs): the agent's own SVID (24 h too) still has hours left.
  for (let h = 0; h < 13; h++) {
    clock.advance(HOUR);
    await new Promise((r) => setImmediate(r));
  }

  agent = await cluster.startInProcessAgent(raw, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced');
  assert.equal(agent.status().state, 'synced', `the agent reaches the server: ${agent.status().lastError ?? ''}`);

  const client = connectWorkloadApi(raw.socket_path);
  t.after(() => client.close());
  const onNewRoot = async (): Promise<boolean> => {
    const svid = (await client.fetchX509Svid()).svids?.[0];
    if (svid === undefined) return false;
    const chain = splitConcatenatedDer(svid.x509_svid!);
    verifyChain(chain, splitConcatenatedDer(svid.bundle!), clock.now(), { requireEndEntity: true });
    return parseCertificate(chain[1]!).authorityKeyId !== parseCertificate(tainted.certDer!).subjectKeyId;
  };
  let moved = false;
  for (let i = 0; i < 100 && !moved; i++) {
    moved = await onNewRoot();
    if (!moved) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(moved, 'the workload SVID was re-signed under the new root');
});

test('an agent down while its root was tainted and revoked with --force attests again with a new join token and the current bundle on the same data dir', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  t.after(judgeTlsOnClock(clock));
  const cluster = await startInProcessCluster(clock, 'meshid-down-across-revoke-');
  t.after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: ID, selectors: [`unix:uid:${process.getuid!()}`] });
  const raw = { socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') };
  let agent = await cluster.startInProcessAgent({ ...raw, join_token: await cluster.token() }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 1);
  const cutOffId = agent.status().agentId;
  await agent.stop();

  const root = cluster.meshidServer.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: root.id });
  await cluster.admin.call('Authorities', 'RevokeAuthority', { id: root.id, force: true });

  // It holds only the revoked root, which the server's SVID left at the revoke: the current bundle (`bundle show`) and
  // a new join token, as README says, on the same data dir. Its stored SVID is refused as cut off ("must re-attest"),
  // so it attests with the token instead of retrying that SVID for ever ("needs the agent SVID").
  // With a new token and the bundle as it is now (`bundle show`), on the same data dir: a new agent, synced.
  await cluster.writeBundle();
  const token = await cluster.token();
  agent = await cluster.startInProcessAgent({ ...raw, join_token: token }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 1);
  assert.equal(agent.status().state, 'synced', `attested again: ${agent.status().lastError ?? ''}`);
  assert.notEqual(agent.status().agentId, cutOffId);
});
