import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { parseEntryFile, parseEntryIdFile } from '../../../src/server/cli/entry-file.js';

const refused = (pattern: RegExp) => (err: unknown) => isMeshidError(err, 'invalid_argument') && pattern.test(err.message);

test('entry files in spire-server entry create -data format load as admin API entries (SPIRE 1.15 additional_attributes all false too)', () => {
  const text = JSON.stringify({
    entries: [
      {
        selectors: [{ type: 'unix', value: 'uid:501' }, { Type: 'unix', Value: 'gid:20' }],
        spiffe_id: 'spiffe://example.org/blog',
        Parent_ID: 'spiffe://example.org/node/east',
        ttl: 0,
        x509_svid_ttl: 3600,
        jwt_svid_ttl: 300,
        dns_names: ['blog.example.org'],
        federates_with: ['partner.org'],
        admin: true,
        hint: 'blue',
        entry_id: 'blog-1',
        revision_number: 0,
        store_svid: false,
        additional_attributes: { disable_x509_svid_prefetch: false, jwt_svid_include_jti: false },
      },
      { spiffe_id: 'spiffe://example.org/db', parent_id: 'spiffe://example.org/node/east', selectors: [{ type: 'unix', value: 'uid:502' }], ttl: 600, additional_attributes: null },
    ],
  });
  assert.deepEqual(parseEntryFile(text, 'entries.json'), [
    {
      selectors: [{ type: 'unix', value: 'uid:501' }, { type: 'unix', value: 'gid:20' }],
      spiffe_id: 'spiffe://example.org/blog',
      parent_id: 'spiffe://example.org/node/east',
      x509_svid_ttl: 3600,
      jwt_svid_ttl: 300,
      dns_names: ['blog.example.org'],
      federates_with: ['partner.org'],
      admin: true,
      hint: 'blue',
      id: 'blog-1',
    },
    { spiffe_id: 'spiffe://example.org/db', parent_id: 'spiffe://example.org/node/east', selectors: [{ type: 'unix', value: 'uid:502' }], x509_svid_ttl: 600 },
  ]);
});

test('an entry file meshid cannot honour whole is refused with where and why, before anything is created', () => {
  assert.throws(() => parseEntryFile('{"entries": [', 'e.json'), refused(/^e\.json is not valid JSON/));
  assert.throws(() => parseEntryFile('[]', 'e.json'), refused(/must be a JSON object with an "entries" array/));
  assert.throws(() => parseEntryFile('{"entries": [{"store_svid": true}]}', 'e.json'), refused(/^e\.json: entry 1: "store_svid" has no meshid equivalent unless 0 or false; remove it/));
  assert.throws(() => parseEntryFile('{"entries": [{}, {"node_alias": 1}]}', 'e.json'), refused(/^e\.json: entry 2: "node_alias" has no meshid equivalent; remove it/));
  assert.throws(() => parseEntryFile('{"entries": [{"additional_attributes": {"jwt_svid_include_jti": true}}]}', 'e.json'),
    refused(/^e\.json: entry 1: "additional_attributes\.jwt_svid_include_jti" has no meshid equivalent unless false/));
  assert.throws(() => parseEntryFile('{"entries": [{"ttl": 60, "x509_svid_ttl": 120}]}', 'e.json'), refused(/"x509_svid_ttl" sets x509_svid_ttl a second time, to another value/));
  assert.throws(() => parseEntryFile('{"entries": [{"selectors": ["unix:uid:1"]}]}', 'e.json'), refused(/selector 1 must be \{"type": "\.\.\.", "value": "\.\.\."\}/));
  assert.throws(() => parseEntryFile('{"entries": [{"x509_svid_ttl": "1h"}]}', 'e.json'), refused(/"x509_svid_ttl" must be a whole number of seconds/));
  assert.throws(() => parseEntryFile('{"entries": [{"x509_svid_ttl": 2147483648}]}', 'e.json'), refused(/"x509_svid_ttl" 2147483648 s is too large \(at most 2147483647\)/));
});

test('entry ID files in spire-server entry delete -file format: "ids" in any case; anything else is refused naming the file', () => {
  assert.deepEqual(parseEntryIdFile('{"ids": ["e-1", "e-2"]}', 'd.json'), ['e-1', 'e-2']);
  assert.deepEqual(parseEntryIdFile('{"IDs": []}', 'd.json'), []);
  assert.throws(() => parseEntryIdFile('{"ids": ["e-1"], "Ids": ["e-2"]}', 'd.json'), refused(/d\.json/));
  assert.throws(() => parseEntryIdFile('{"ids": [1]}', 'd.json'), refused(/^d\.json must be a JSON object with an "ids" array of entry IDs/));
  assert.throws(() => parseEntryIdFile('["e-1"]', 'd.json'), refused(/"ids" array/));
  assert.throws(() => parseEntryIdFile('{"ids": [', 'd.json'), refused(/^d\.json is not valid JSON/));
});
