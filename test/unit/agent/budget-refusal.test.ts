/**
 * How long a budget refusal asks the agent to wait (budget-refusal.ts): the server's retry pushback (trailer
 * `grpc-retry-pushback-ms`) first, the message's "…; retry in N s" from a server that sends none.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { budgetRefusalWaitMs, MAX_BUDGET_REFUSAL_WAIT_MS, retryPushbackWaitMs } from '../../../src/agent/client/budget-refusal.js';
import { IdentityCache } from '../../../src/agent/cache/identity-cache.js';
import { SvidIssuer } from '../../../src/agent/cache/svid-issuer.js';
import { MeshidError, resourceExhausted, unavailable } from '../../../src/common/errors.js';
import { fromServiceError, RETRY_PUSHBACK_KEY } from '../../../src/common/grpc-status.js';
import { silentLogger } from '../../../src/common/log.js';
import { until } from '../../support/until.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';
import { startConnection, stubIdentity, stubServer } from './stub-node-server.js';

/** A refusal as grpc-js hands it to the agent's client: code, details and trailers. */
function received(code: grpc.status, details: string, pushback?: string): MeshidError {
  const metadata = new grpc.Metadata();
  if (pushback !== undefined) metadata.set(RETRY_PUSHBACK_KEY, pushback);
  return fromServiceError(Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata }));
}

/** Trailers holding a retry pushback of `value`. */
function pushback(value: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set(RETRY_PUSHBACK_KEY, value);
  return metadata;
}

/** Lets the agent's promises and microtasks run (no time passes on its clock). */
async function idle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('the wait of a budget refusal: the pushback when the server sends one, else the message hint; nothing for other answers', () => {
  const cases: Array<[string, MeshidError, number | undefined]> = [
    ['pushback and hint', received(grpc.status.RESOURCE_EXHAUSTED, 'signing rate limit reached; retry in 2 s', '1250'), 1250],
    ['pushback alone', received(grpc.status.RESOURCE_EXHAUSTED, 'signing rate limit reached', '7000'), 7000],
    ['hint alone (an older server)', received(grpc.status.RESOURCE_EXHAUSTED, 'signing rate limit reached; retry in 3 s'), 3000],
    ['a pushback that is no wait (A6: do not retry)', received(grpc.status.RESOURCE_EXHAUSTED, 'the datastore disk is full', '-1'), undefined],
    ['a pushback that is no number', received(grpc.status.RESOURCE_EXHAUSTED, 'the datastore disk is full', 'soon'), undefined],
    ['neither (a full datastore disk)', received(grpc.status.RESOURCE_EXHAUSTED, 'the datastore disk is full'), undefined],
    ['UNAVAILABLE with a pushback: an outage', received(grpc.status.UNAVAILABLE, 'too many attestation attempts', '200'), undefined],
    ['made here, with a hint', resourceExhausted('signing rate limit reached; retry in 4 s'), 4000],
    ['made here, an outage', unavailable('signing rate limit reached; retry in 4 s'), undefined],
  ];
  for (const [name, err, wait] of cases) assert.equal(budgetRefusalWaitMs(err), wait, name);
});

test("the agent holds its signing queue for the pushback of a stub server's refusal whose message has no hint, and signs after it", async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const cache = fx.cache();
  const signer = fx.signer(cache);

  // A stub meshid-server: the agent API's SignX509Svids only, refusing the first call with the pushback alone.
  let calls = 0;
  const client = await stubServer(t, fx, {
    SignX509Svids: (call: grpc.ServerUnaryCall<{ items: Array<{ entry_id: string; csr: Buffer }> }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      if (++calls === 1) {
        callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'signing rate limit reached', metadata: pushback('7000') });
        return;
      }
      void signer.sign(call.request.items.map((i) => ({ entryId: i.entry_id, csr: i.csr }))).then((results) =>
        callback(null, { results: results.map((r) => ({ entry_id: r.entryId, code: r.code, message: r.message, svid_chain: r.chain })) }),
      );
    },
  });
  const issuer = new SvidIssuer({ cache, sign: (batch) => client.signX509Svids(batch), clock: fx.clock, log: silentLogger(), random: () => 0.5 });
  t.after(() => issuer.stop());

  let refusal: unknown;
  await assert.rejects(
    client.signX509Svids([]).catch((err: unknown) => {
      refusal = err;
      throw err;
    }),
  );
  assert.equal(budgetRefusalWaitMs(refusal), 7000, 'the pushback, with no hint in the message');
  calls = 0;

  const e = entry('pushback', ['unix:uid:4242']);
  issuer.request(cache.apply({ upserts: [e] }).needSvid);
  await until('the refused call', () => (calls === 1 && issuer.pending().failing === 1 && issuer.pending().inflight === 0 ? true : undefined));
  // Held for the 7 s asked (plus the jitter's half second at random 0.5): no call before that, on the agent's clock.
  for (let waited = 0; waited < 7400; waited += 200) {
    fx.clock.advance(200);
    await idle();
    assert.deepEqual([calls, issuer.pending().inflight], [1, 0], `no signing call ${waited + 200} ms after the refusal`);
  }
  fx.clock.advance(200);
  await until('the SVID signed after the pushback', () => (cache.svid(e.id) !== undefined ? true : undefined));
  assert.equal(calls, 2);
});

/** Steps the clock to `ms` after a refusal, 100 ms at a time, checking no second `what` was made on the way; lands on `ms`. */
async function nothingNewBefore(fx: AgentFixture, ms: number, count: () => number, what: string): Promise<void> {
  for (let waited = 100; waited < ms; waited += 100) {
    fx.clock.advance(100);
    await idle();
    assert.equal(count(), 1, `no ${what} ${waited} ms after the refusal`);
  }
  fx.clock.advance(100);
}

/**
 * A ServerConnection whose stub server refuses every Sync open over its budget with `pushbackMs` as the trailer;
 * resolves once the first open was refused, with the clock readings of the opens.
 */
async function syncRefusedWithPushback(t: TestContext, pushbackMs: string): Promise<{ fx: AgentFixture; opens: number[] }> {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const opens: number[] = [];
  const client = await stubServer(t, fx, {
    Sync: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      opens.push(fx.clock.now());
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'agent spiffe://example.org/meshid/agent/east/a opens Sync streams too often', metadata: pushback(pushbackMs) });
    },
  });
  // Only what the connection asks of the agent identity while it holds a valid SVID.
  const identity = stubIdentity({ current: () => ({ trustDomain: 'example.org' }) });
  const connection = startConnection(t, fx, client, identity);
  await until('the refused open', () => (opens.length === 1 && connection.state === 'disconnected' ? true : undefined));
  return { fx, opens };
}

test("the Sync stream refused by a stub server's Sync-open budget is opened again no sooner than its pushback, not at the backoff's half second", async (t) => {
  const { fx, opens } = await syncRefusedWithPushback(t, '1800');
  await nothingNewBefore(fx, 1800, () => opens.length, 'open');
  await until('the open after the pushback', () => (opens.length === 2 ? true : undefined));
  assert.equal(opens[1]! - opens[0]!, 1800);
});

test("a stub server's absurd budget wait (a pushback of 115 days, a hint of a day) holds the agent's Sync stream for five minutes at most", async (t) => {
  assert.equal(budgetRefusalWaitMs(received(grpc.status.RESOURCE_EXHAUSTED, 'signing rate limit reached; retry in 86400 s')), MAX_BUDGET_REFUSAL_WAIT_MS);
  const { fx, opens } = await syncRefusedWithPushback(t, '9999999999');
  fx.clock.advance(MAX_BUDGET_REFUSAL_WAIT_MS);
  await until('the open five minutes after the refusal', () => (opens.length === 2 ? true : undefined));
  assert.equal(opens[1]! - opens[0]!, MAX_BUDGET_REFUSAL_WAIT_MS);
});

test("an Attest a stub server refuses UNAVAILABLE for its source's attempts is retried no sooner than its pushback (at most five minutes), not at the backoff's half second", async (t) => {
  assert.equal(retryPushbackWaitMs(received(grpc.status.UNAVAILABLE, 'too many attestation attempts from 10.0.0.1; retry in 3 s', '2500')), 2500);
  assert.equal(retryPushbackWaitMs(received(grpc.status.UNAVAILABLE, 'too many attestation attempts from 10.0.0.1; retry in 3 s', '9999999999')), MAX_BUDGET_REFUSAL_WAIT_MS);
  assert.equal(retryPushbackWaitMs(received(grpc.status.UNAVAILABLE, 'connection refused')), undefined);
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const attempts: number[] = [];
  const client = await stubServer(t, fx, {
    Attest: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
      attempts.push(fx.clock.now());
      callback({ code: grpc.status.UNAVAILABLE, details: 'too many attestation attempts from 127.0.0.1; retry in 3 s', metadata: pushback('2500') });
    },
  });
  // Only what the connection asks of the agent identity before it holds an SVID.
  const identity = stubIdentity({ current: () => undefined, attest: () => client.attest('join-token', Buffer.alloc(0)) });
  const connection = startConnection(t, fx, client, identity);
  await until('the refused attempt', () => (attempts.length === 1 && connection.lastErrorMessage !== undefined ? true : undefined));
  await nothingNewBefore(fx, 2500, () => attempts.length, 'attempt');
  await until('the attempt after the pushback', () => (attempts.length === 2 ? true : undefined));
  assert.equal(attempts[1]! - attempts[0]!, 2500);
});

test("an Attest a stub server refuses with retry pushback does not make the agent probe the server's trust: the server answered over an authenticated channel", async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  let attempts = 0;
  const client = await stubServer(t, fx, {
    Attest: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
      attempts++;
      callback({ code: grpc.status.UNAVAILABLE, details: 'too many attestation attempts from 127.0.0.1; retry in 3 s', metadata: pushback('2500') });
    },
  });
  // A first attestation: no bundle held yet, so an outage (no pushback) would be probed with the bootstrap roots.
  const cache = new IdentityCache({ clock: fx.clock, log: silentLogger(), signJwtSvid: () => Promise.reject(new Error('no JWT signer in this test')) });
  const identity = stubIdentity({ current: () => undefined, attest: () => client.attest('join-token', Buffer.alloc(0)) });
  let probes = 0;
  const connection = startConnection(t, fx, client, identity, {
    cache,
    bootstrapRoots: [Buffer.from('bootstrap root')],
    checkBootstrapTrust: () => {
      probes++;
      return Promise.resolve(undefined);
    },
  });
  await until('the refused attempt', () => (attempts === 1 && connection.lastErrorMessage !== undefined ? true : undefined));
  fx.clock.advance(2500);
  await until('the attempt after the pushback', () => (attempts === 2 && connection.lastErrorMessage !== undefined ? true : undefined));
  assert.equal(probes, 0, 'no trust probe for a refusal the server answered');
});
