/** Date flags (`agent list --expires-before`): RFC 3339, or spire-server's Go layout as its operators write it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDate } from '../../../src/server/cli/flags.js';

test("spire-server's layout takes a fractional second after the seconds, '.' or ',', as Go's time.Parse does", () => {
  const noon = Date.parse('2026-05-01T12:00:00Z');
  assert.equal(checkDate('2026-05-01 14:00:00 +0200 +02', '-expiresBefore'), noon);
  assert.equal(checkDate('2026-05-01 14:00:00.25 +0200 +02', '-expiresBefore'), noon + 250);
  assert.equal(checkDate('2026-05-01 12:00:00,5 +0000', '-expiresBefore'), noon + 500);
  assert.equal(checkDate('2026-05-01 12:00:00.123456789 +0000 +00', '-expiresBefore'), noon + 123);
  assert.equal(checkDate('2026-05-01T12:00:00.75Z', '--expires-before'), noon + 750);
});

test('a fraction without digits, or a day that does not exist, is still not a date', () => {
  for (const bad of ['2026-05-01 12:00:00. +0000 +00', '2026-02-30 12:00:00.5 +0000 +00', '2026-05-01 12:00:00.5']) {
    assert.throws(() => checkDate(bad, '-expiresBefore'), /^MeshidError: flag -expiresBefore: ".*" is not a date/);
  }
});
