/**
 * SDS first answers during a spell of signing refusals (a reconnect storm after a CA rotation spends the server's
 * signing budget for seconds): the server refuses a new entry's SVID RESOURCE_EXHAUSTED with a retry hint, and the
 * agent holds a StreamSecrets' and a DeltaSecrets' first response, and a FetchSecrets, until that SVID is signed,
 * instead of answering without it (one push more for Envoy, a NOT_FOUND for a fetch). In-process server and agent
 * share a FakeClock set an hour behind real time (OpenSSL judges the certificates by real time); the budget is spent
 * by a client presenting the agent's own SVID.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { SvidIssuer } from '../../src/agent/cache/svid-issuer.js';
import { spendSigningBudget } from '../support/node-api-client.js';
import {
  connectSds,
  decodeDeltaResources,
  DeltaClient,
  envoyNode,
  fetchSecrets,
  secretsByName,
  SotwClient,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from '../support/sds-client.js';
import { until } from '../support/until.js';
import { advanceUntil } from '../support/advance-until.js';
import { agentWithSvidCopy, signingBudgetSuite } from '../support/signing-budget-suite.js';

const suite = signingBudgetSuite('meshid-signing-budget-sds-');
const { clock } = suite;
const uid = process.getuid!();

test('StreamSecrets, DeltaSecrets and FetchSecrets made while the signing budget refuses a new SVID wait for it and carry it in their first answer', async () => {
  const first = 'spiffe://example.org/budget/sds-first';
  const added = 'spiffe://example.org/budget/sds-added';
  await suite.cluster.createEntry({ spiffeId: first, selectors: [`unix:uid:${uid}`] });
  const { agent, socketPath, impostor } = await agentWithSvidCopy(suite.cluster, clock);
  const sds = connectSds(socketPath);
  const sotw = new SotwClient(sds);
  const delta = new DeltaClient(sds);
  try {
    const refusal = await spendSigningBudget(impostor);
    assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, 'a spent budget is not an outage');

    await suite.cluster.createEntry({ spiffeId: added, selectors: [`unix:uid:${uid}`] });
    const issuer = (agent as unknown as { issuer: SvidIssuer }).issuer;
    await until('the new entry refused (or held) by the budget', () => {
      const p = issuer.pending();
      return agent.status().entries === 2 && p.failing + p.queued === 1 ? true : undefined;
    });

    const answers: { sotw?: DiscoveryResponse | Error; delta?: DeltaDiscoveryResponse | Error; fetch?: DiscoveryResponse | Error } = {};
    sotw.subscribe([added, 'ROOTCA']);
    sotw.next(60_000).then((r) => (answers.sotw = r), (err: Error) => (answers.sotw = err));
    delta.request({ node: envoyNode(), subscribe: [added] });
    delta.next(60_000).then((r) => (answers.delta = r), (err: Error) => (answers.delta = err));
    fetchSecrets(sds, { node: envoyNode(), resource_names: [added] }).then((r) => (answers.fetch = r), (err: Error) => (answers.fetch = err));
    const answered = (): boolean => answers.sotw !== undefined && answers.delta !== undefined && answers.fetch !== undefined;
    await advanceUntil(clock, answered);

    const { sotw: s1, delta: d1, fetch: f1 } = answers;
    assert.ok(s1 !== undefined && !(s1 instanceof Error), `StreamSecrets answers: ${String(s1)}`);
    assert.deepEqual([...secretsByName(s1).keys()].sort(), [added, 'ROOTCA'].sort(), 'the first response carries the SVID that was being signed');
    assert.ok(d1 !== undefined && !(d1 instanceof Error), `DeltaSecrets answers: ${String(d1)}`);
    assert.deepEqual(decodeDeltaResources(d1).map((r) => r.name), [added]);
    assert.ok(f1 !== undefined && !(f1 instanceof Error), `FetchSecrets answers: ${String(f1)}`);
    assert.deepEqual([...secretsByName(f1).keys()], [added]);
  } finally {
    sotw.cancel();
    delta.cancel();
    sds.close();
    impostor.close();
  }
});
