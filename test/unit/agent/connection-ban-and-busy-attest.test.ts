/**
 * ServerConnection (client/server-connection.ts) against a stub meshid-server, for two answers the integration tests
 * reach only on an agent that had synced: a ban refusing the first Sync of an agent restored from its data dir, and
 * an Attest refused RESOURCE_EXHAUSTED (the server's datastore disk full), which is retried, not fatal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { MeshidError, resourceExhausted } from '../../../src/common/errors.js';
import { until } from '../../support/until.js';
import { entry, openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubServer, stubIdentity } from './stub-node-server.js';

test('a ban refusing the first Sync of an agent restored from its data dir withdraws every entry and leaves the cache synced: callers are refused for good, not told to retry', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  // Restored: entries held, not yet the server's word (synced() false until the first Sync answer).
  const cache = fx.cache();
  cache.apply({ upserts: [entry('a', ['unix:uid:1000']), entry('b', ['unix:uid:1001'])] });
  assert.equal(cache.synced(), false);
  const { streams, Sync } = recordedSync(() => false);
  const client = await stubServer(t, fx, { Sync });
  const calls: string[] = [];
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org', spiffeId: 'spiffe://example.org/meshid/agent/x' }),
    canReattest: () => true,
    attest: () => Promise.reject(new Error('a banned agent must not attest again by itself')),
    discard: () => calls.push('discard'),
    stop: () => calls.push('stop'),
  });
  const connection = startConnection(t, fx, client, identity, { cache });
  await until('the Sync stream', () => (streams.length === 1 ? true : undefined));
  streams[0]!.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'banned: agent spiffe://example.org/meshid/agent/x is banned' });
  await until('the ban', () => (connection.state === 'banned' ? true : undefined));
  assert.deepEqual(cache.entries(), [], 'every entry withdrawn');
  assert.equal(cache.synced(), true, 'a caller with no entry now hears PERMISSION_DENIED, not "not synced yet, retry" for ever');
  assert.deepEqual(calls, ['discard'], 'the agent SVID and key are discarded; no re-attestation with the configured token');
});

test('an Attest refused RESOURCE_EXHAUSTED (the server cannot store the agent now) is retried after a backoff, not taken as a final refusal', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { Sync } = recordedSync();
  const client = await stubServer(t, fx, { Sync });
  let attested = false;
  let attempts = 0;
  const identity = stubIdentity({
    current: () => (attested ? { trustDomain: 'example.org', spiffeId: 'spiffe://example.org/meshid/agent/x' } : undefined),
    canReattest: () => true,
    attest: () => {
      attempts++;
      if (attempts === 1) return Promise.reject(resourceExhausted('datastore: the disk is full; the join token is kept for a retry'));
      attested = true;
      return Promise.resolve(fx.bundle());
    },
  });
  const connection = startConnection(t, fx, client, identity);
  // startConnection's onFatal ignores the error; the state tells: a fatal first attestation leaves 'stopped'.
  await until('the first attempt', () => (attempts === 1 ? true : undefined));
  await new Promise((r) => setImmediate(r));
  assert.equal(connection.state, 'attesting', `still attesting after the refusal (state ${connection.state}: ${connection.lastErrorMessage})`);
  fx.clock.advance(60_000);
  await until('the retry and the first sync', () => (connection.state === 'synced' ? true : undefined));
  assert.equal(attempts, 2);
});

test('a first attestation refused for good (a used join token) stops the agent; it is not left waiting for a new token as a re-attestation would be', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { Sync } = recordedSync();
  const client = await stubServer(t, fx, { Sync });
  let attempts = 0;
  const identity = stubIdentity({
    current: () => undefined,
    attest: () => {
      attempts++;
      return Promise.reject(new MeshidError('permission_denied', 'join token already used'));
    },
  });
  const connection = startConnection(t, fx, client, identity);
  await until('the refusal', () => (connection.state !== 'attesting' && connection.state !== 'connecting' ? true : undefined));
  assert.equal(connection.state, 'stopped', 'fatal at start: the process exits saying why (onFatal)');
  assert.equal(connection.lastErrorMessage, 'join token already used');
  assert.equal(attempts, 1, 'not retried');
});
