/**
 * entryToEntryMessage (common/entry-message.ts), which both the server (entryToProto: Sync and the admin API) and the
 * agent (entryToMessage: its stored state) use: every field in meshid.v1.Entry's shape, created_at in whole seconds
 * rounded down, created_at_ms only for a time known to the millisecond, and arrays of the message's own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { entryToEntryMessage, type EntryFields } from '../../../src/common/entry-message.js';
import { entryFromMessage, entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { entryToProto } from '../../../src/server/api/convert.js';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';

const fields: EntryFields = {
  id: 'e-1',
  spiffeId: 'spiffe://example.org/web',
  parentId: 'spiffe://example.org/node',
  selectors: [
    { type: 'unix', value: 'uid:1000' },
    { type: 'k8s', value: 'ns:default' },
  ],
  x509SvidTtlSeconds: 3600,
  jwtSvidTtlSeconds: 300,
  dnsNames: ['web.example.org'],
  hint: 'internal',
  federatesWith: ['partner.org'],
  admin: true,
  downstream: false,
  revision: 42,
};
// Late in its second: a time rounded to the nearest second would be the next one, after the entry was made.
const createdAt = 1_700_000_000_999;

test('every field in meshid.v1.Entry shape; created_at is the second the entry was made in, rounded down, and created_at_ms the exact time', () => {
  assert.deepEqual(entryToEntryMessage(fields, createdAt, true), {
    id: 'e-1',
    spiffe_id: 'spiffe://example.org/web',
    parent_id: 'spiffe://example.org/node',
    selectors: [
      { type: 'unix', value: 'uid:1000' },
      { type: 'k8s', value: 'ns:default' },
    ],
    x509_svid_ttl: 3600,
    jwt_svid_ttl: 300,
    dns_names: ['web.example.org'],
    hint: 'internal',
    federates_with: ['partner.org'],
    admin: true,
    downstream: false,
    revision: 42,
    created_at: 1_700_000_000,
    created_at_ms: createdAt,
  });
});

test('a creation time known only to the second has no created_at_ms: seconds are never passed off as milliseconds', () => {
  const message = entryToEntryMessage(fields, 1_700_000_000_000, false);
  assert.equal(message.created_at, 1_700_000_000);
  assert.equal('created_at_ms' in message, false);
});

test("the message's arrays are its own: changing them leaves the entry as it was", () => {
  const entry: EntryFields = { ...fields, selectors: [...fields.selectors], dnsNames: [...fields.dnsNames], federatesWith: [...fields.federatesWith] };
  const message = entryToEntryMessage(entry, createdAt, true);
  message.selectors!.push({ type: 'unix', value: 'uid:0' });
  message.selectors![0]!.value = 'uid:0';
  message.dns_names!.push('evil.example.org');
  message.federates_with!.push('other.org');
  assert.deepEqual([entry.selectors, entry.dnsNames, entry.federatesWith], [fields.selectors, fields.dnsNames, fields.federatesWith]);
});

test("the server sends an entry's time to the millisecond; the agent stores its own as exact as it came, and reads it back so", () => {
  const stored: RegistrationEntry = {
    ...fields,
    selectors: [...fields.selectors],
    dnsNames: [...fields.dnsNames],
    federatesWith: [...fields.federatesWith],
    createdAt,
    updatedAt: createdAt,
  };
  const proto = entryToProto(stored);
  assert.equal(proto.created_at_ms, createdAt);
  assert.equal(proto.created_at, 1_700_000_000);

  const exact = entryFromMessage(proto);
  assert.deepEqual([exact.createdAt, exact.createdAtExact], [createdAt, true]);
  const storedExact = entryToMessage(exact);
  assert.deepEqual([storedExact.created_at, storedExact.created_at_ms], [1_700_000_000, createdAt]);

  // From a server (or a stored state) from before created_at_ms: whole seconds, and stored as whole seconds again.
  const { created_at_ms: _, ...fromOldServer } = proto;
  const inexact = entryFromMessage(fromOldServer);
  assert.deepEqual([inexact.createdAt, inexact.createdAtExact], [1_700_000_000_000, false]);
  const storedInexact = entryToMessage(inexact);
  assert.equal('created_at_ms' in storedInexact, false);
  const readBack = entryFromMessage(storedInexact);
  assert.deepEqual([readBack.createdAt, readBack.createdAtExact], [1_700_000_000_000, false]);
});
