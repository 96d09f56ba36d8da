import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireValidateFields } from '../../../src/agent/workload/validate-jwt.js';
import { isMeshidError } from '../../../src/common/errors.js';

test('ValidateJWTSVID takes a token with the whitespace a file or shell variable brings around it, and none inside', () => {
  assert.deepEqual(requireValidateFields({ audience: 'db', svid: 'a.b.c\n' }), { audience: 'db', token: 'a.b.c' });
  assert.deepEqual(requireValidateFields({ audience: 'db', svid: ' \ta.b.c\r\n' }), { audience: 'db', token: 'a.b.c' });
  assert.equal(requireValidateFields({ audience: 'db', svid: 'a.b\n.c' }).token, 'a.b\n.c', 'inside the token: left for the parser to refuse');
});

test('ValidateJWTSVID without an audience, or with a token of whitespace only, is INVALID_ARGUMENT naming the field', () => {
  assert.throws(() => requireValidateFields({ audience: '', svid: 'a.b.c' }), (e: unknown) => isMeshidError(e, 'invalid_argument') && /audience/.test(e.message));
  assert.throws(() => requireValidateFields({ audience: 'db', svid: ' \n' }), (e: unknown) => isMeshidError(e, 'invalid_argument') && /svid/.test(e.message));
});
