/**
 * An SDS `default` secret whose entry moves to another workload is withdrawn at once, even while the caller's next
 * entry, a different one, is still being signed: the client must not go on holding the first entry's SVID, now another
 * workload's identity, for as long as that unrelated signing lasts. (A first version of a hold on such withdrawals got
 * this wrong; the hold was then dropped.) The signing is kept under way by the server's signing budget (spent by a
 * client presenting the agent's own SVID), so it lasts until the test's FakeClock moves, which it never does here.
 * In-process server and agent on a FakeClock an hour behind real time (OpenSSL judges certificates by real time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { SvidIssuer } from '../../src/agent/cache/svid-issuer.js';
import { spendSigningBudget } from '../support/node-api-client.js';
import {
  connectSds,
  dataSourceText,
  DeltaClient,
  envoyNode,
  secretsByName,
  SotwClient,
  type DecodedSecret,
} from '../support/sds-client.js';
import { until } from '../support/until.js';
import { agentWithSvidCopy, signingBudgetSuite } from '../support/signing-budget-suite.js';

const suite = signingBudgetSuite('meshid-sds-default-hold-');
const { clock } = suite;
const uid = process.getuid!();

const uriOf = (secret: DecodedSecret | undefined): string | undefined =>
  secret === undefined ? undefined : new X509Certificate(dataSourceText(secret.tls_certificate?.certificate_chain)).subjectAltName;

test('`default` whose entry moves to another workload is withdrawn at once while the caller\'s next entry is still being signed, on StreamSecrets and DeltaSecrets', async () => {
  const moved = 'spiffe://example.org/hold/moved';
  const next = 'spiffe://example.org/hold/next';
  const movedId = await suite.cluster.createEntry({ spiffeId: moved, selectors: [`unix:uid:${uid}`] });
  const { agent, socketPath, impostor } = await agentWithSvidCopy(suite.cluster, clock);
  const sds = connectSds(socketPath);
  const sotw = new SotwClient(sds);
  const delta = new DeltaClient(sds);
  try {
    sotw.subscribe(['default']);
    delta.request({ node: envoyNode(), subscribe: ['default'] });
    const first = await sotw.next(10_000);
    sotw.ack(first, ['default']);
    const firstDelta = await delta.next(10_000);
    delta.ack(firstDelta);
    assert.equal(uriOf(secretsByName(first).get('default')), `URI:${moved}`);

    // The caller's next entry waits for the signing budget, which the FakeClock never lets come back here.
    await spendSigningBudget(impostor);
    await suite.cluster.createEntry({ spiffeId: next, selectors: [`unix:uid:${uid}`] });
    const issuer = (agent as unknown as { issuer: SvidIssuer }).issuer;
    await until('the new entry held by the budget', () => {
      const p = issuer.pending();
      return agent.status().entries === 2 && p.failing + p.queued === 1 ? true : undefined;
    });

    // The default's entry now belongs to another workload (another uid): the caller's default is `next`, not signed yet.
    await suite.cluster.admin.call('Entries', 'UpdateEntry', {
      entry: { id: movedId, selectors: [{ type: 'unix', value: `uid:${uid + 1}` }] },
      mask: ['selectors'],
    });
    // Before, both streams said nothing until `next` was signed, leaving the client with the moved entry's SVID.
    const withdrawn = await sotw.next(10_000);
    assert.deepEqual([...secretsByName(withdrawn).keys()], [], 'the moved entry\'s SVID is withdrawn');
    const removal = await delta.next(10_000);
    assert.deepEqual(removal.removed_resources, ['default']);
    assert.deepEqual(removal.resources ?? [], []);
  } finally {
    sotw.cancel();
    delta.cancel();
    sds.close();
    impostor.close();
  }
});
