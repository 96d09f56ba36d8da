import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeName } from '../../../src/common/x509/name.js';

test('a Name with an empty attribute value is refused (X.520 gives every one at least one character), not encoded', () => {
  assert.equal(encodeName([['O', 'meshid'], ['CN', 'web']]).length > 0, true);
  for (const type of ['O', 'OU', 'CN'] as const) assert.throws(() => encodeName([['O', 'meshid'], [type, '']]), RangeError, type);
});
