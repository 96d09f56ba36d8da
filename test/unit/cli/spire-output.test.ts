import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spireAgent, spireBundle, spireEntry, spireRelationship, spireSpiffeId, spireStatus } from '../../../src/server/cli/spire-output.js';
import { renderAgent } from '../../../src/server/cli/agent.js';

test('an entry is spire-api-sdk\'s Entry: IDs split into trust_domain and path, every field present, int64 as strings', () => {
  assert.deepEqual(spireEntry({ id: 'e-1', spiffe_id: 'spiffe://example.org/web', selectors: [{ type: 'unix', value: 'uid:0' }], revision: 3, created_at: 1700000000 }), {
    id: 'e-1',
    spiffe_id: { trust_domain: 'example.org', path: '/web' },
    parent_id: { trust_domain: '', path: '' },
    selectors: [{ type: 'unix', value: 'uid:0' }],
    x509_svid_ttl: 0,
    federates_with: [],
    admin: false,
    downstream: false,
    expires_at: '0',
    dns_names: [],
    revision_number: '3',
    store_svid: false,
    jwt_svid_ttl: 0,
    hint: '',
    created_at: '1700000000',
  });
});

test('a SPIFFE ID splits at the first slash after the scheme; a trust domain ID has an empty path', () => {
  assert.deepEqual(spireSpiffeId('spiffe://example.org/a/b'), { trust_domain: 'example.org', path: '/a/b' });
  assert.deepEqual(spireSpiffeId('spiffe://example.org'), { trust_domain: 'example.org', path: '' });
  assert.deepEqual(spireSpiffeId(undefined), { trust_domain: '', path: '' });
});

test('a success status says OK, as SPIRE\'s servers do; a refusal keeps its code and message', () => {
  assert.deepEqual(spireStatus(0, ''), { code: 0, message: 'OK' });
  assert.deepEqual(spireStatus(undefined, undefined), { code: 0, message: 'OK' });
  assert.deepEqual(spireStatus(6, 'entry already exists'), { code: 6, message: 'entry already exists' });
});

test('an agent is spire-api-sdk\'s Agent: the serial in decimal, as SPIRE prints it, attested by join_token', () => {
  assert.deepEqual(spireAgent({ spiffe_id: 'spiffe://example.org/meshid/agent/east/x', cert_serial: '0100', cert_expires_at: 5, datacenter: 'east' }), {
    id: { trust_domain: 'example.org', path: '/meshid/agent/east/x' },
    attestation_type: 'join_token',
    x509svid_serial_number: '256',
    x509svid_expires_at: '5',
    selectors: [],
    banned: false,
    can_reattest: false,
    agent_version: '',
  });
});

test('an agent\'s reported version is spire-api-sdk\'s agent_version; `agent show` prints it as spire-server does, only when reported', () => {
  const agent = { spiffe_id: 'spiffe://example.org/meshid/agent/east/x', cert_serial: '0100', cert_expires_at: 5, datacenter: 'east' };
  assert.equal(spireAgent({ ...agent, agent_version: '0.1.0+6ebd53b' })['agent_version'], '0.1.0+6ebd53b');
  assert.match(renderAgent({ ...agent, agent_version: '0.1.0+6ebd53b' }), /^Agent version {4}: 0\.1\.0\+6ebd53b$/m);
  assert.doesNotMatch(renderAgent({ ...agent, agent_version: '' }), /Agent version/);
  assert.doesNotMatch(renderAgent(agent), /Agent version/);
});

test('a bundle is spire-api-sdk\'s Bundle: authorities as objects, tainted roots marked', () => {
  const root = Buffer.from('root');
  const doc = spireBundle({ trust_domain: 'example.org', x509_authorities: [root, Buffer.from('other')], jwt_authorities: [{ kid: 'k', public_key: Buffer.from('pk'), expires_at: 9 }], sequence: 2 }, (d) => d.equals(root));
  assert.deepEqual(doc, {
    trust_domain: 'example.org',
    x509_authorities: [{ asn1: root, tainted: true }, { asn1: Buffer.from('other'), tainted: false }],
    jwt_authorities: [{ public_key: Buffer.from('pk'), key_id: 'k', expires_at: '9', tainted: false }],
    refresh_hint: '0',
    sequence_number: '2',
    wit_authorities: [],
  });
});

test('a relationship carries its profile as the oneof SPIRE prints, and the bundle only when one is stored', () => {
  assert.deepEqual(spireRelationship({ trust_domain: 'p.org', bundle_endpoint_url: 'https://p/', bundle_endpoint_profile: 'https_web', last_error: 'x' }), {
    trust_domain: 'p.org', bundle_endpoint_url: 'https://p/', https_web: {},
  });
  const spiffe = spireRelationship({ trust_domain: 'p.org', bundle_endpoint_url: 'https://p/', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://p.org/s' }, { trust_domain: 'p.org' });
  assert.deepEqual(spiffe['https_spiffe'], { endpoint_spiffe_id: 'spiffe://p.org/s' });
  assert.equal((spiffe['trust_domain_bundle'] as { trust_domain: string }).trust_domain, 'p.org');
});
