import { test } from 'node:test';
import assert from 'node:assert/strict';
import { integrityCheckProblems } from '../../../src/server/datastore/sqlite-datastore.js';

test('the problems an integrity check names are at most the limit, even when one row of its answer holds several, without the line naming the database', () => {
  assert.deepEqual(integrityCheckProblems(['ok'], 3), []);
  // PRAGMA integrity_check(3) stops after 3 rows, but a row may hold several problems, a line each.
  const rows = [
    '*** in database main ***\nOn tree page 4 cell 0: invalid page number 99\nPage 7: never used\nPage 8: never used',
    'row 2 missing from index entries_by_identity',
    'wrong # of entries in index entries_by_identity',
  ];
  assert.deepEqual(integrityCheckProblems(rows, 3), ['On tree page 4 cell 0: invalid page number 99', 'Page 7: never used', 'Page 8: never used']);
  assert.deepEqual(integrityCheckProblems(rows, 1), ['On tree page 4 cell 0: invalid page number 99']);
  // An answer with nothing but the database's name still says the file is not sound: it is passed on as it came.
  assert.deepEqual(integrityCheckProblems(['*** in database main ***'], 3), ['*** in database main ***']);
});
