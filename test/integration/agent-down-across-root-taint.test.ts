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
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { verifyChain } from '../../src/common/x509/chain-verification.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { connectWorkloadApi, type WorkloadApiClient } from '../../src/agent/cli/workload-client.js';
import { advanceUntil } from '../support/advance-until.js';
import { startInProcessCluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;
const ID = 'spiffe://example.org/down-across-taint/a';

test('an agent down while the root was tainted, started again after the server SVID\'s half-life, reconnects without a new join token and moves its workloads off the tainted root', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  teardown(t).after(judgeTlsOnClock(clock));
  const cluster = await startInProcessCluster(clock, 'meshid-down-across-taint-');
  teardown(t).after(() => cluster.cleanup());
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
  teardown(t).after(() => client.close());
  assert.ok(await servedOffRoot(client, tainted.certDer!, clock), 'the workload SVID was re-signed under the new root');
});

test('an agent down while its root was tainted and revoked with --force attests again with a new join token and the current bundle on the same data dir', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  teardown(t).after(judgeTlsOnClock(clock));
  const cluster = await startInProcessCluster(clock, 'meshid-down-across-revoke-');
  teardown(t).after(() => cluster.cleanup());
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

test('an agent that was down while the root of its workload SVID\'s retired intermediate was tainted and revoked re-signs that SVID when the bundle without the root arrives', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  teardown(t).after(judgeTlsOnClock(clock));
  // 4 h SVIDs renewed at half-life; a 9 h intermediate is replaced 5 h after it was made, when it can no longer cover
  // a 4 h SVID. The agent stops at 4.5 h holding an SVID signed at 4 h, due for renewal at 6 h.
  const ttls = { default_x509_svid_ttl: '4h', max_x509_svid_ttl: '4h', agent_svid_ttl: '4h', intermediate_ttl: '9h' };
  const cluster = await startInProcessCluster(clock, 'meshid-down-across-revoke-old-', ttls);
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: ID, selectors: [`unix:uid:${process.getuid!()}`] });
  const raw = { socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') };
  let agent = await cluster.startInProcessAgent({ ...raw, join_token: await cluster.token() }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 1);
  const authority = (state: string, kind: string): string | undefined =>
    cluster.meshidServer.ca.listAuthorities().find((a) => a.kind === kind && a.state === state)?.id;
  const first = authority('active', 'intermediate')!;
  const root = cluster.meshidServer.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  const minutes = async (n: number, until: () => boolean = () => false): Promise<void> => {
    for (let i = 0; i < n && !until(); i++) {
      clock.advance(60_000);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  await minutes(270);
  assert.equal(authority('active', 'intermediate'), first, 'the SVID\'s intermediate still signs when the agent stops');
  await agent.stop();

  // That intermediate retires ("old") while the agent is down; a taint of its root then does not list it (it signs
  // nothing more), and the revoke takes the root out of every list.
  await minutes(90, () => authority('old', 'intermediate') === first);
  assert.equal(authority('old', 'intermediate'), first, 'the SVID\'s intermediate retired');
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: root.id });
  await cluster.admin.call('Authorities', 'RevokeAuthority', { id: root.id, force: true });

  await cluster.writeBundle();
  agent = await cluster.startInProcessAgent({ ...raw, join_token: await cluster.token() }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 1);
  assert.equal(agent.status().state, 'synced', `attested again: ${agent.status().lastError ?? ''}`);
  // Its cached SVID chains to the revoked root, which no taint list names: re-signed when the new bundle arrives,
  // not served unverifiable until its half-life. Found by the CA lifecycle model (seed 310).
  const client = connectWorkloadApi(raw.socket_path);
  teardown(t).after(() => client.close());
  assert.ok(await servedOffRoot(client, root.certDer!, clock), 'the workload SVID was re-signed under the current root');
});

/**
 * Polls (real time: the re-signing is network I/O) until the caller's X509-SVID verifies against the bundle it came
 * with and its intermediate is not under `oldRoot`.
 */
async function servedOffRoot(client: WorkloadApiClient, oldRoot: Buffer, clock: FakeClock): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const svid = (await client.fetchX509Svid()).svids?.[0];
    if (svid !== undefined) {
      const chain = splitConcatenatedDer(svid.x509_svid!);
      try {
        verifyChain(chain, splitConcatenatedDer(svid.bundle!), clock.now(), { requireEndEntity: true });
        if (parseCertificate(chain[1]!).authorityKeyId !== parseCertificate(oldRoot).subjectKeyId) return true;
      } catch {
        // Not re-signed yet.
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
