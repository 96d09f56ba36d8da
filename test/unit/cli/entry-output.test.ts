import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderEntry, renderEntryList } from '../../../src/server/cli/entry-output.js';

const ENTRY = {
  id: 'e-0123',
  spiffe_id: 'spiffe://example.org/web',
  parent_id: 'spiffe://example.org/agent',
  selectors: [{ type: 'unix', value: 'uid:1000' }, { type: 'unix', value: 'gid:0' }],
  x509_svid_ttl: 3600,
  jwt_svid_ttl: 300,
  revision: 7,
  created_at: 1_700_000_000,
};

test("an entry prints in spire-server's layout, one Selector line per selector", () => {
  assert.equal(
    renderEntry(ENTRY),
    [
      'Entry ID         : e-0123',
      'SPIFFE ID        : spiffe://example.org/web',
      'Parent ID        : spiffe://example.org/agent',
      'Revision         : 7',
      'X509-SVID TTL    : 3600',
      'JWT-SVID TTL     : 300',
      'Selector         : unix:uid:1000',
      'Selector         : unix:gid:0',
      'Created at       : 2023-11-14T22:13:20.000Z',
      '',
    ].join('\n'),
  );
});

test('optional entry fields print only when set', () => {
  const text = renderEntry({ ...ENTRY, dns_names: ['web.local'], federates_with: ['partner.org'], admin: true, downstream: true, hint: 'h' });
  assert.match(text, /^Downstream       : true$/m);
  assert.match(text, /^DNS name         : web\.local$/m);
  assert.match(text, /^FederatesWith    : partner\.org$/m);
  assert.match(text, /^Admin            : true$/m);
  assert.match(text, /^Hint             : h$/m);
  assert.doesNotMatch(renderEntry(ENTRY), /Admin|Hint|DNS|Downstream|FederatesWith/);
});

test('a TTL of 0 prints as "default" and a missing revision as 0 (proto3 omits zero values)', () => {
  const text = renderEntry({ id: 'e', spiffe_id: 's', parent_id: 'p' });
  assert.match(text, /^Revision         : 0$/m);
  assert.match(text, /^X509-SVID TTL    : default$/m);
  assert.doesNotMatch(text, /Created at/);
});

test('entry lists are headed by their count, with a blank line before each entry', () => {
  assert.equal(renderEntryList([]), 'Found 0 entries\n');
  assert.equal(renderEntryList([ENTRY]), `Found 1 entry\n\n${renderEntry(ENTRY)}`);
  assert.match(renderEntryList([ENTRY, ENTRY]), /^Found 2 entries\n\nEntry ID/);
});
