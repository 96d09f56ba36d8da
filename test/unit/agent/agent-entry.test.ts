import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateInputs, entryFromMessage, entryToMessage, type AgentEntry } from '../../../src/agent/cache/agent-entry.js';

const message = {
  id: 'e-inputs',
  spiffe_id: 'spiffe://example.org/web',
  parent_id: 'spiffe://example.org/node',
  selectors: [{ type: 'unix', value: 'uid:1' }],
  x509_svid_ttl: 3600,
  dns_names: ['a.example', 'b.example'],
};

test('certificate inputs keep the form stored with SVIDs in the agent\'s state, for entries from the server and from the store', () => {
  const e = entryFromMessage(message);
  assert.equal(certificateInputs(e), '["spiffe://example.org/web",["a.example","b.example"],3600]');
  assert.equal(certificateInputs(e), certificateInputs(e), 'asked again, the same');
  assert.equal(certificateInputs(entryFromMessage(entryToMessage(e))), certificateInputs(e), 'restored from the state, the same');
});

test('another object with other DNS names or TTL has its own certificate inputs, never those of the entry it was copied from', () => {
  const e = entryFromMessage(message);
  certificateInputs(e);
  const dns: AgentEntry = { ...e, dnsNames: ['c.example'] };
  assert.equal(certificateInputs(dns), '["spiffe://example.org/web",["c.example"],3600]');
  const ttl: AgentEntry = { ...e, x509SvidTtlSeconds: 600 };
  assert.equal(certificateInputs(ttl), '["spiffe://example.org/web",["a.example","b.example"],600]');
  const changed = entryFromMessage({ ...message, dns_names: ['d.example'] });
  assert.equal(certificateInputs(changed), '["spiffe://example.org/web",["d.example"],3600]', 'the same entry ID received with other DNS names');
});
