import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { backoffDelay, Backoff, RECONNECT_BACKOFF } from '../../../src/agent/client/backoff.js';
import { BANNED_PREFIX, REATTEST_PREFIX, rejectionOf } from '../../../src/agent/client/rejection.js';
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

test('the agent reads the server refusals with the prefixes the server writes', () => {
  assert.equal(REATTEST_PREFIX, server.REATTEST_PREFIX);
  assert.equal(BANNED_PREFIX, server.BANNED_PREFIX);
  assert.equal(rejectionOf(permissionDenied(`${server.REATTEST_PREFIX}agent x was evicted`)), 'reattest');
  assert.equal(rejectionOf(permissionDenied(`${server.BANNED_PREFIX}agent x is banned`)), 'banned');
  assert.equal(rejectionOf(permissionDenied('entry e is not authorized for this agent')), undefined);
  assert.equal(rejectionOf(unavailable(`${server.BANNED_PREFIX}not a refusal`)), undefined, 'only PERMISSION_DENIED counts');
  assert.equal(rejectionOf(new Error(`${server.BANNED_PREFIX}x`)), undefined);
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
