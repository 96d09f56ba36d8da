import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SvidIssuer } from '../../../src/agent/cache/svid-issuer.js';
import { applySyncUpdate } from '../../../src/agent/client/sync-apply.js';
import type { BundleMessage } from '../../../src/agent/client/messages.js';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { silentLogger } from '../../../src/common/log.js';
import { openAgentFixture, type AgentFixture } from './agent-fixture.js';

// The bundles of a SyncUpdate as the agent applies them (sync-apply.ts). Mutation testing round 2: with either check
// below dropped, every agent Sync test still passed.

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

function message(b: TrustBundle): BundleMessage {
  return {
    trust_domain: b.trustDomain,
    x509_authorities: b.x509Authorities,
    jwt_authorities: b.jwtAuthorities.map((k) => ({ kid: k.kid, public_key: k.publicKey.export({ type: 'spki', format: 'der' }) })),
    sequence: b.sequence,
  };
}

function applyTo(update: Parameters<typeof applySyncUpdate>[0]) {
  const cache = fx.cache();
  const issuer = new SvidIssuer({ cache, sign: fx.signer(cache).sign, clock: fx.clock, log: silentLogger() });
  cache.apply({ bundle: fx.bundle(), federatedBundles: [{ ...fx.bundle(), trustDomain: 'partner.example', jwtAuthorities: [] }] });
  const applied = applySyncUpdate(update, { cache, issuer, log: silentLogger(), trustDomain: 'example.org' });
  issuer.stop();
  return { cache, applied };
}

test("another trust domain's bundle sent as the own one is ignored: the own bundle stays, and the agent's trust with it", () => {
  const own = fx.bundle();
  const foreign = { ...own, trustDomain: 'partner.example', sequence: own.sequence + 1 };
  const { cache, applied } = applyTo({ revision: 2, initial: false, entries: [], removed_entry_ids: [], bundle: message(foreign) });
  assert.equal(applied.bundle, undefined, 'no own bundle is handed on (the connection would set its trust from it)');
  assert.equal(cache.ownBundle()?.trustDomain, 'example.org');
  assert.equal(cache.ownBundle()?.sequence, own.sequence);
});

test('federated bundles stated as changed to none drop every federated bundle (the last relationship deleted)', () => {
  const { cache } = applyTo({ revision: 2, initial: false, entries: [], removed_entry_ids: [], federated_bundles: [], federated_bundles_changed: true });
  assert.deepEqual(cache.federatedBundles().map((b) => b.trustDomain), []);
});

test('an update that does not state the federated bundles leaves them as they were', () => {
  const { cache } = applyTo({ revision: 2, initial: false, entries: [], removed_entry_ids: [] });
  assert.deepEqual(cache.federatedBundles().map((b) => b.trustDomain), ['partner.example']);
});

test('a federated bundle of the own trust domain is left out: it could add roots to the own trust domain', () => {
  const own = fx.bundle();
  const { cache } = applyTo({
    revision: 2, initial: false, entries: [], removed_entry_ids: [], federated_bundles_changed: true,
    federated_bundles: [message({ ...own, trustDomain: 'partner.example' }), message({ ...own, sequence: own.sequence + 1 })],
  });
  assert.deepEqual(cache.federatedBundles().map((b) => b.trustDomain), ['partner.example']);
  assert.equal(cache.ownBundle()?.sequence, own.sequence);
});
