/**
 * A workload's first X.509 message during a spell of signing refusals (a reconnect storm after a CA rotation spends
 * the server's signing budget for seconds): the server refuses RESOURCE_EXHAUSTED with a retry hint, and the agent
 * holds a one-shot FetchX509SVID until the refused SVIDs are signed, instead of answering with the identities it had
 * before. In-process server and agent share a FakeClock set an hour behind real time (OpenSSL judges the
 * certificates by real time); the budget is spent by a client presenting the agent's own SVID.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { SvidIssuer } from '../../src/agent/cache/svid-issuer.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { spendSigningBudget } from '../support/node-api-client.js';
import { until } from '../support/until.js';
import { advanceUntil } from '../support/advance-until.js';
import { agentWithSvidCopy, signingBudgetSuite } from '../support/signing-budget-suite.js';

const suite = signingBudgetSuite('meshid-signing-budget-');
const { clock } = suite;
const uid = process.getuid!();

test('a FetchX509SVID made while the signing budget refuses the caller\'s new SVIDs waits for them and gets every identity, not the one it had', async () => {
  const spiffeIds = ['spiffe://example.org/budget/first', 'spiffe://example.org/budget/second', 'spiffe://example.org/budget/third'];
  await suite.cluster.createEntry({ spiffeId: spiffeIds[0]!, selectors: [`unix:uid:${uid}`] });
  const { agent, socketPath, impostor } = await agentWithSvidCopy(suite.cluster, clock);
  const workload = connectWorkloadApi(socketPath, { timeoutMs: 60_000 });
  try {
    clock.advance(1000); // the entries made next are younger than the first (created_at counts seconds)
    const refusal = await spendSigningBudget(impostor);
    assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, 'a spent budget is not an outage');
    assert.match(refusal.details, /^signing rate limit reached; retry in \d+ s$/);

    for (const spiffeId of spiffeIds.slice(1)) await suite.cluster.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`] });
    const issuer = (agent as unknown as { issuer: SvidIssuer }).issuer;
    // Refused, or (made after the refusal) held until the server's hint: no call goes before it.
    const refusedOrHeld = (): boolean => {
      const p = issuer.pending();
      return p.failing >= 1 && p.failing + p.queued === 2;
    };
    await until('the new entries refused by the budget', () => (agent.status().entries === 3 && refusedOrHeld() ? true : undefined));

    let answer: X509SvidResponse | Error | undefined;
    workload.fetchX509Svid().then(
      (m) => (answer = m),
      (err: Error) => (answer = err),
    );
    await advanceUntil(clock, () => answer !== undefined);
    assert.ok(answer !== undefined && !(answer instanceof Error), `the fetch answers: ${String(answer)}`);
    assert.deepEqual(answer.svids!.map((s) => s.spiffe_id).sort(), [...spiffeIds].sort(), 'every identity of the caller');
    assert.equal(answer.svids![0]!.spiffe_id, spiffeIds[0], 'the oldest entry stays the default');
  } finally {
    workload.close();
    impostor.close();
  }
});
