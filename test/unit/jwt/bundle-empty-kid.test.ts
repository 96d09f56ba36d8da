import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { bundleFromSpiffeJson, federatedBundleFromSpiffeJson } from '../../../src/common/spiffe/bundle.js';
import { isMeshidError } from '../../../src/common/errors.js';

// A jwt-svid key must have a non-empty kid (SPIFFE Bundle §4.2.2; JWT-SVID validation looks the key up by it).
// Mutation testing round 2: with only the kid's type checked, every bundle test passed and a key with kid "" was
// trusted.
function jwtKey(kid: string): Record<string, unknown> {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...publicKey.export({ format: 'jwk' }), use: 'jwt-svid', kid };
}

test("a partner's jwt-svid key with an empty kid is ignored, with the reason; its other keys are read", () => {
  const doc = JSON.stringify({ keys: [jwtKey(''), jwtKey('kept')], spiffe_sequence: 1 });
  const { bundle, ignored } = federatedBundleFromSpiffeJson('partner.example', doc);
  assert.deepEqual(bundle.jwtAuthorities.map((k) => k.kid), ['kept']);
  assert.equal(ignored.length, 1);
  assert.match(ignored[0]!, /keys\[0\]: a jwt-svid key must have a non-empty kid; the key is ignored/);
});

test('the own bundle with a jwt-svid key of empty kid is refused whole', () => {
  const doc = JSON.stringify({ keys: [jwtKey('')], spiffe_sequence: 1 });
  assert.throws(() => bundleFromSpiffeJson('example.org', doc), (err) => isMeshidError(err, 'invalid_argument') && /non-empty kid/.test(err.message));
});
