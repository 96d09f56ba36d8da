/**
 * A workload's FetchJWTSVID during a spell of signing refusals (a reconnect storm after a CA rotation spends the
 * server's signing budget for seconds): with no token cached for it, the agent waits for the server's retry time and
 * answers with the token, as a first X.509 message waits for its SVIDs, instead of failing the call at once; a caller
 * whose deadline comes first is told at once, in the agent's words; a caller that cancels takes its wait with it. In-process server and agent share a FakeClock set an hour behind real
 * time (OpenSSL judges the certificates by real time); the budget is spent by a client presenting the agent's own SVID.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import type { JwtSvidResponse } from '../../src/agent/workload/messages.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { RETRY_PUSHBACK_KEY } from '../../src/common/grpc-status.js';
import { isMeshidError } from '../../src/common/errors.js';
import { spendSigningBudget } from '../support/node-api-client.js';
import { until } from '../support/until.js';
import { advanceUntil } from '../support/advance-until.js';
import { agentWithSvidCopy, signingBudgetSuite } from '../support/signing-budget-suite.js';

const suite = signingBudgetSuite('meshid-signing-budget-jwt-');
const { clock } = suite;
const uid = process.getuid!();

test('a FetchJWTSVID made while the signing budget refuses the agent waits for the retry time and gets its token; a caller whose deadline comes first is told at once', async () => {
  const spiffeId = 'spiffe://example.org/budget/jwt';
  await suite.cluster.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`] });
  const { socketPath, impostor } = await agentWithSvidCopy(suite.cluster, clock);
  // 0.9 s: under the retry time (the FakeClock stands still, so the budget's one second stays whole), with room for a
  // loaded machine to deliver the call.
  const hurried = connectWorkloadApi(socketPath, { timeoutMs: 900 });
  const workload = connectWorkloadApi(socketPath, { timeoutMs: 60_000 });
  try {
    const refusal = await spendSigningBudget(impostor);
    assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);

    // 0.9 s is less than the retry time (a second at least): no wait, the refusal as it is.
    await assert.rejects(hurried.fetchJwtSvid(['db']), (err: unknown) => isMeshidError(err, 'unavailable') && /retry in \d+ s/.test(err.message));

    let answer: JwtSvidResponse | Error | undefined;
    workload.fetchJwtSvid(['db']).then(
      (m) => (answer = m),
      (err: Error) => (answer = err),
    );
    await advanceUntil(clock, () => answer !== undefined);
    assert.ok(answer !== undefined && !(answer instanceof Error), `the fetch answers: ${String(answer)}`);
    assert.deepEqual(answer.svids!.map((s) => s.spiffe_id), [spiffeId]);
    const claims = JSON.parse(Buffer.from(answer.svids![0]!.svid!.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string; aud: string[] };
    assert.deepEqual([claims.sub, claims.aud], [spiffeId, ['db']]);
  } finally {
    hurried.close();
    workload.close();
    impostor.close();
  }
});

/** A second agent (own socket, data dir and budget) with its budget spent, and a raw Workload API client to it. */
async function agentWithSpentBudget(name: string): Promise<{
  agent: MeshidAgent;
  fetchJwt: (audience: string, options: grpc.CallOptions, done: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall;
  close: () => void;
}> {
  const { agent, socketPath, impostor } = await agentWithSvidCopy(suite.cluster, clock, name);
  const Workload = serviceClient(loadProto('workload/workload.proto'), 'SpiffeWorkloadAPI');
  const raw = new Workload(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const header = new grpc.Metadata();
  header.set('workload.spiffe.io', 'true');
  const refusal = await spendSigningBudget(impostor);
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  return {
    agent,
    fetchJwt: (audience, options, done) =>
      (raw as unknown as Record<string, Function>)['FetchJWTSVID']!.call(raw, { audience: [audience] }, header, options, done) as grpc.ClientUnaryCall,
    close: () => {
      raw.close();
      impostor.close();
    },
  };
}

test('a FetchJWTSVID the budget refusal is not waited out for is told UNAVAILABLE in the agent\'s words, with the agent\'s retry pushback', async () => {
  const { fetchJwt, close } = await agentWithSpentBudget('agent-wording');
  try {
    // 0.9 s is less than the retry time: the agent answers at once, as itself, with when to come back.
    const hurried = await new Promise<grpc.ServiceError>((resolve) => fetchJwt('hurried', { deadline: Date.now() + 900 }, (err) => resolve(err!)));
    assert.equal(hurried.code, grpc.status.UNAVAILABLE, hurried.details);
    assert.match(hurried.details, /^cannot get a JWT-SVID for spiffe:\/\/example\.org\/budget\/jwt: meshid-server is refusing to sign for now; retry in \d+ s$/);
    assert.doesNotMatch(hurried.details, /signing rate limit/, 'not the server\'s wording');
    assert.match(String(hurried.metadata.get(RETRY_PUSHBACK_KEY)[0]), /^\d+$/, 'the agent\'s own retry pushback');
  } finally {
    close();
  }
});

test('a FetchJWTSVID without a deadline cancelled while it waits for the budget ends its wait, and nothing is signed for it', async () => {
  const { agent, fetchJwt, close } = await agentWithSpentBudget('agent-cancel');
  // The agent's JWT-SVID cache (private): its tokens, and its hold on signing after a budget refusal.
  const jwtCache = (agent as unknown as { cache: { jwt: { size: number; hold: { heldUntil(): number | undefined } } } }).cache.jwt;
  const tokens = (): number => jwtCache.size;
  try {
    let ended: grpc.ServiceError | null | undefined;
    const call = fetchJwt('cancelled', {}, (err) => (ended = err));
    // The call's signing was refused (this agent signs nothing else meanwhile), which sets the hold. The call decides
    // between waiting and answering in the microtasks after that, before this poll's timer runs, so an answer would
    // already be written when the hold is seen. A hurried call sent now is answered at once (its deadline comes before
    // the retry time) after it, on the same connection: once that answer is here, the first call's would be too.
    await until('the budget refusal of the call', () => (jwtCache.hold.heldUntil() !== undefined ? true : undefined));
    // Its deadline as close to the retry time as can be, for a loaded machine: the agent's clock stands still here, so
    // any deadline before the retry time is one it answers at once (callDeadlineOnClock).
    const retryInMs = jwtCache.hold.heldUntil()! - clock.now();
    const hurried = await new Promise<grpc.ServiceError | null>((resolve) => fetchJwt('hurried', { deadline: Date.now() + retryInMs - 1 }, resolve));
    assert.equal(hurried?.code, grpc.status.UNAVAILABLE, hurried?.details);
    assert.equal(ended, undefined, 'waiting for the budget');
    call.cancel();
    await until('the cancelled call to end', () => (ended !== undefined ? true : undefined));
    // Past every retry the old wait would have made (20 s), with the budget refilled meanwhile.
    for (let s = 0; s < 25; s++) {
      clock.advance(1000);
      await new Promise((r) => setTimeout(r, 20));
    }
    // A sentinel signed after those retries: after a refusal the agent signs one at a time, in order (JwtSigningHold),
    // and a retry of the old wait fired inside the advances above, so its signing would have been done and cached
    // before this one is answered. Then the sentinel's is the only token.
    const sentinel = await new Promise<grpc.ServiceError | null>((resolve) => fetchJwt('sentinel', { deadline: Date.now() + 20_000 }, resolve));
    assert.equal(sentinel, null, 'the sentinel is signed');
    assert.equal(tokens(), 1, 'no token was signed and cached for the cancelled call');
  } finally {
    close();
  }
});
