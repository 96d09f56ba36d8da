import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { parseRelationshipFile } from '../../../src/server/cli/relationship-file.js';

const refused = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'invalid_argument') && pattern.test(err.message);
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

test('relationship files in spire-server federation create -data format load as admin API requests', () => {
  const doc = { keys: [], spiffe_sequence: 4 };
  const text = JSON.stringify({
    federationRelationships: [
      { trustDomain: 'web.example', bundleEndpointURL: 'https://web.example/bundle', bundleEndpointProfile: 'https_web' },
      {
        TrustDomain: 'partner.org', bundleEndpointUrl: 'https://partner.org:8443', bundleEndpointProfile: 'https_spiffe',
        endpointSpiffeId: 'spiffe://partner.org/spire/server', trustDomainBundle: PEM, trustDomainBundleFormat: 'pem',
      },
      // SPIRE's default format is pem, a string; a SPIFFE document is the object itself, with or without its format.
      { trustDomain: 'a.org', bundleEndpointURL: 'https://a.org', bundleEndpointProfile: 'https_spiffe', endpointSPIFFEID: 'spiffe://a.org/s', trustDomainBundle: PEM },
      { trustDomain: 'b.org', bundleEndpointURL: 'https://b.org', bundleEndpointProfile: 'https_spiffe', endpointSPIFFEID: 'spiffe://b.org/s', trustDomainBundle: doc, trustDomainBundleFormat: 'spiffe' },
      { trustDomain: 'c.org', bundleEndpointURL: 'https://c.org', bundleEndpointProfile: 'https_web', trustDomainBundle: doc },
    ],
  });
  assert.deepEqual(parseRelationshipFile(text, 'rel.json'), [
    { relationship: { trust_domain: 'web.example', bundle_endpoint_url: 'https://web.example/bundle', bundle_endpoint_profile: 'https_web' } },
    {
      relationship: { trust_domain: 'partner.org', bundle_endpoint_url: 'https://partner.org:8443', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.org/spire/server' },
      bundle: PEM, bundle_format: 'pem',
    },
    { relationship: { trust_domain: 'a.org', bundle_endpoint_url: 'https://a.org', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://a.org/s' }, bundle: PEM, bundle_format: 'pem' },
    { relationship: { trust_domain: 'b.org', bundle_endpoint_url: 'https://b.org', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://b.org/s' }, bundle: JSON.stringify(doc), bundle_format: 'spiffe' },
    { relationship: { trust_domain: 'c.org', bundle_endpoint_url: 'https://c.org', bundle_endpoint_profile: 'https_web' }, bundle: JSON.stringify(doc), bundle_format: 'spiffe' },
  ]);
  assert.deepEqual(parseRelationshipFile('{"federationRelationships": []}', 'rel.json'), []);
});

test('a relationship file that is not one, or that would lose a setting, is refused naming the file, the relationship and the field', () => {
  const file = (...relationships: unknown[]): string => JSON.stringify({ federationRelationships: relationships });
  const ok = { trustDomain: 'p.org', bundleEndpointURL: 'https://p.org', bundleEndpointProfile: 'https_web' };
  const cases: Array<[string, RegExp]> = [
    ['{', /^rel\.json is not valid JSON/],
    ['{"relationships": []}', /^rel\.json must be a JSON object with a "federationRelationships" array, as spire-server federation create -data reads$/],
    [file(ok, 'p.org'), /^rel\.json: relationship 2 is not a JSON object$/],
    [file({ ...ok, refreshHint: 60 }), /^rel\.json: relationship 1: "refreshHint" is not a federation relationship field \(known: trustDomain, bundleEndpointURL, .*\); remove it$/],
    [file({ bundleEndpointURL: 'https://p.org' }), /^rel\.json: relationship 1: "trustDomain" is required$/],
    [file({ trustDomain: 'p.org' }), /^rel\.json: relationship 1 \(p\.org\): "bundleEndpointURL" is required$/],
    [file({ ...ok, trustDomain: 7 }), /"trustDomain" must be a string/],
    [file({ ...ok, trustDomainBundleFormat: 'der', trustDomainBundle: PEM }), /"trustDomainBundleFormat" must be pem or spiffe/],
    [file({ ...ok, trustDomainBundleFormat: 'pem' }), /"trustDomainBundleFormat" goes with "trustDomainBundle"/],
    [file({ ...ok, trustDomainBundle: { keys: [] }, trustDomainBundleFormat: 'pem' }), /is a SPIFFE bundle document \(a JSON object\), but "trustDomainBundleFormat" says pem/],
    [file({ ...ok, trustDomainBundle: ['x'] }), /"trustDomainBundle" must be PEM in a string or a SPIFFE bundle document/],
    ['{"federationRelationships": [{"trustDomain": "p.org", "TRUSTDOMAIN": "q.org", "bundleEndpointURL": "https://p.org"}]}', /^rel\.json, line 1: duplicate key "TRUSTDOMAIN" in federationRelationships\[0\]/],
  ];
  for (const [text, pattern] of cases) assert.throws(() => parseRelationshipFile(text, 'rel.json'), refused(pattern), text);
});
