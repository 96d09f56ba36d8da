import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { backoffDelay, Backoff, RECONNECT_BACKOFF, retryCapWithin } from '../../../src/agent/client/backoff.js';
import * as grpc from '@grpc/grpc-js';
import { BANNED_PREFIX, expiredSvidRefusal, REATTEST_PREFIX, rejectionOf, supersededSerial } from '../../../src/agent/client/rejection.js';
import { NodeClient } from '../../../src/agent/client/node-client.js';
import { fromServiceError } from '../../../src/common/grpc-status.js';
import { silentLogger } from '../../../src/common/log.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import type { AttestedAgent } from '../../../src/server/datastore/datastore.js';
import { serverIdentityCheck } from '../../../src/agent/client/server-identity.js';
import { trustDomainOfRoots } from '../../../src/agent/client/trust-bundle-file.js';
import { bundleFromMessage } from '../../../src/agent/client/messages.js';
import * as server from '../../../src/server/api/agent-auth.js';
import { permissionDenied, unavailable } from '../../../src/common/errors.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

test('backoff grows exponentially to its cap and every delay lies in the upper half of its step', () => {
  const steps = [0, 1, 2, 3, 10, 50].map((n) => [backoffDelay(n, RECONNECT_BACKOFF, () => 0), backoffDelay(n, RECONNECT_BACKOFF, () => 0.999999)]);
  assert.deepEqual(steps.map(([lo]) => lo), [250, 500, 1000, 2000, 15_000, 15_000]);
  assert.deepEqual(steps.map(([, hi]) => hi), [500, 1000, 2000, 4000, 30_000, 30_000]);
  const b = new Backoff(RECONNECT_BACKOFF, () => 0);
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 250);
});

test('a backoff delay capped for a deadline is jittered over the upper half of the cap, and the capped attempts still count', () => {
  assert.deepEqual([backoffDelay(10, RECONNECT_BACKOFF, () => 0, 4000), backoffDelay(10, RECONNECT_BACKOFF, () => 0.999999, 4000)], [2000, 4000]);
  // A cap above the step's delay changes nothing; Infinity is no cap.
  assert.equal(backoffDelay(1, RECONNECT_BACKOFF, () => 0.999999, 4000), 1000);
  assert.equal(backoffDelay(50, RECONNECT_BACKOFF, () => 0.999999, Infinity), 30_000);
  const b = new Backoff(RECONNECT_BACKOFF, () => 0.999999);
  assert.deepEqual([b.next(100), b.next(100), b.next(100), b.next()], [100, 100, 100, 4000]);
});

test('a retry is bounded by a quarter of the SVID time left (at least 5 s); an SVID at or past its notAfter, or none, bounds nothing', () => {
  const now = Date.UTC(2026, 0, 1);
  assert.equal(retryCapWithin(now + 40 * 60_000, now, RECONNECT_BACKOFF), 10 * 60_000);
  assert.equal(retryCapWithin(now + 1, now, RECONNECT_BACKOFF), 5000);
  // Expired at its notAfter, as AgentIdentity.expired and the cache take it: nothing left to protect, plain backoff.
  assert.equal(retryCapWithin(now, now, RECONNECT_BACKOFF), Infinity);
  assert.equal(retryCapWithin(now - 1, now, RECONNECT_BACKOFF), Infinity);
  assert.equal(retryCapWithin(undefined, now, RECONNECT_BACKOFF), Infinity);
});

test('the agent reads the server refusals with the prefixes the server writes', () => {
  assert.equal(REATTEST_PREFIX, server.REATTEST_PREFIX);
  assert.equal(BANNED_PREFIX, server.BANNED_PREFIX);
  assert.equal(rejectionOf(permissionDenied(`${server.REATTEST_PREFIX}agent x was evicted`)), 'reattest');
  assert.equal(rejectionOf(permissionDenied(`${server.BANNED_PREFIX}agent x is banned`)), 'banned');
  assert.equal(rejectionOf(permissionDenied('entry e is not authorized for this agent')), undefined);
  assert.equal(rejectionOf(unavailable(`${server.BANNED_PREFIX}not a refusal`)), undefined, 'only PERMISSION_DENIED counts');
  assert.equal(rejectionOf(new Error(`${server.BANNED_PREFIX}x`)), undefined);
});

test("the agent reads the SVID's notAfter and the server's clock from the server's own expired-SVID refusal, and from an older server's", () => {
  const notAfter = Date.UTC(2026, 0, 1, 1);
  const now = Date.UTC(2026, 0, 1, 3);
  const agentId = 'spiffe://example.org/meshid/agent/east/a';
  assert.deepEqual(expiredSvidRefusal(permissionDenied(server.expiredSvidRefusal(agentId, notAfter, now))), { notAfter, serverTime: now });
  const older = `${server.REATTEST_PREFIX}agent ${agentId}'s SVID expired at ${new Date(notAfter).toISOString()}; attest again with a new join token`;
  assert.deepEqual(expiredSvidRefusal(permissionDenied(older)), { notAfter, serverTime: undefined });
  assert.equal(expiredSvidRefusal(permissionDenied(`${server.REATTEST_PREFIX}agent ${agentId} is not attested (evicted or never attested)`)), undefined);
  assert.equal(expiredSvidRefusal(unavailable(server.expiredSvidRefusal(agentId, notAfter, now))), undefined, 'only PERMISSION_DENIED counts');
});

test("a refusal of an SVID the agent has renewed away from is retried, not taken for its identity's (NodeClient.translate reads the server's own wording)", () => {
  const previous = fx.issue(entry('meshid/agent/east/1', ['unix:uid:1']));
  const renewed = fx.issue(entry('meshid/agent/east/1', ['unix:uid:1']));
  const refusalOf = (chain: readonly Buffer[]): grpc.ServiceError => {
    const cert = parseCertificate(chain[0]!);
    // As the server words it (agent-auth.ts): the record's updatedAt after the certificate's notBefore.
    const err = server.notCurrentSvid('spiffe://example.org/meshid/agent/east/1', cert, { certSerial: 'ff', updatedAt: cert.notBefore + 1 } as AttestedAgent);
    return Object.assign(new Error(err.message), { code: grpc.status.PERMISSION_DENIED, details: err.message, metadata: new grpc.Metadata() });
  };
  assert.equal(supersededSerial(fromServiceError(refusalOf(previous.chain))), parseCertificate(previous.chain[0]!).serialHex);
  const client = new NodeClient({ serverAddress: '127.0.0.1:1', log: silentLogger() });
  try {
    client.setIdentity({ chain: renewed.chain, privateKey: renewed.key });
    const late = client.translate(refusalOf(previous.chain), 'SignX509Svids');
    assert.equal(late.code, 'unavailable', late.message);
    assert.equal(rejectionOf(late), undefined);
    assert.match(late.message, /sent with the agent's previous SVID \(serial [0-9a-f]+\); retrying with the renewed one$/);
    // The agent still on the SVID another holder renewed away from is the copy that lost it: a refusal, as before.
    client.setIdentity({ chain: previous.chain, privateKey: previous.key });
    assert.equal(rejectionOf(client.translate(refusalOf(previous.chain), 'SignX509Svids')), 'reattest');
  } finally {
    client.close();
  }
});

test('a refusal of a call sent as an agent ID this agent has since attested away from is retried; one of its own ID stays a refusal', () => {
  const evicted = fx.issue(entry('meshid/agent/east/1', ['unix:uid:1']));
  const renewed = fx.issue(entry('meshid/agent/east/1', ['unix:uid:1']));
  const attested = fx.issue(entry('meshid/agent/east/2', ['unix:uid:1']));
  const refusal = (message: string): grpc.ServiceError =>
    Object.assign(new Error(message), { code: grpc.status.PERMISSION_DENIED, details: message, metadata: new grpc.Metadata() });
  const notAttested = refusal(`${server.REATTEST_PREFIX}agent spiffe://example.org/meshid/agent/east/1 is not attested (evicted or never attested)`);
  const banned = refusal(server.bannedRefusal('spiffe://example.org/meshid/agent/east/1'));
  const client = new NodeClient({ serverAddress: '127.0.0.1:1', log: silentLogger() });
  try {
    const sentWith = { chain: evicted.chain, privateKey: evicted.key };
    client.setIdentity({ chain: attested.chain, privateKey: attested.key });
    for (const err of [notAttested, banned]) {
      const late = client.translate(err, 'SignJwtSvid', sentWith);
      assert.equal(late.code, 'unavailable', late.message);
      assert.equal(rejectionOf(late), undefined);
      assert.match(late.message, /sent as spiffe:\/\/example\.org\/meshid\/agent\/east\/1, which this agent no longer is/);
    }
    // Renewed under the same ID: an eviction or a ban is the agent's, whichever of its SVIDs the call went with.
    client.setIdentity({ chain: renewed.chain, privateKey: renewed.key });
    assert.equal(rejectionOf(client.translate(notAttested, 'SignJwtSvid', sentWith)), 'reattest');
    assert.equal(rejectionOf(client.translate(banned, 'SignJwtSvid', sentWith)), 'banned');
    assert.equal(rejectionOf(client.translate(banned, 'Sync')), 'banned');
  } finally {
    client.close();
  }
});

test('the server is authenticated by its SPIFFE ID alone: exactly spiffe://<td>/meshid/server', () => {
  const check = serverIdentityCheck(() => 'example.org');
  const certFor = (path: string): PeerCertificate => ({ raw: fx.issue(entry(path, ['unix:uid:1'])).chain[0]! }) as unknown as PeerCertificate;
  assert.equal(check('10.0.0.1', certFor('meshid/server')), undefined, 'whatever host was dialled');
  assert.match(String(check('server', certFor('meshid/agent/east/1'))), /presented spiffe:\/\/example\.org\/meshid\/agent\/east\/1, expected spiffe:\/\/example\.org\/meshid\/server/);
  assert.match(String(serverIdentityCheck(() => 'other.org')('server', certFor('meshid/server'))), /expected spiffe:\/\/other\.org\/meshid\/server/);
  assert.match(String(serverIdentityCheck(() => undefined)('server', certFor('meshid/server'))), /trust domain is not known/);
});

test('the trust domain is read from the roots URI SAN; bundles from the server convert with their JWT keys', () => {
  const bundle = fx.bundle();
  assert.equal(trustDomainOfRoots(bundle.x509Authorities), 'example.org');
  const converted = bundleFromMessage({
    trust_domain: 'example.org',
    x509_authorities: bundle.x509Authorities,
    jwt_authorities: bundle.jwtAuthorities.map((k) => ({ kid: k.kid, public_key: k.publicKey.export({ type: 'spki', format: 'der' }) })),
    sequence: 7,
  });
  assert.equal(converted.sequence, 7);
  assert.deepEqual(converted.jwtAuthorities.map((k) => k.kid), bundle.jwtAuthorities.map((k) => k.kid));
  assert.ok(converted.jwtAuthorities[0]!.publicKey.equals(bundle.jwtAuthorities[0]!.publicKey));
  const pub = generateKeyPair('ec-p256').publicKey.export({ type: 'spki', format: 'der' });
  assert.throws(() => bundleFromMessage({ trust_domain: 'example.org', jwt_authorities: [{ public_key: pub }] }), /has no kid/);
  assert.throws(() => bundleFromMessage({ trust_domain: 'example.org', jwt_authorities: [{ kid: 'k', public_key: Buffer.from('junk') }] }), /malformed public key/);
});
