import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { isJsonObject, parseJsonObject } from '../../../src/common/json-object.js';

test('parseJsonObject returns objects and names what is wrong with anything else, without echoing it', () => {
  assert.deepEqual(parseJsonObject('{"a":1}', 'state'), { a: 1 });
  for (const [text, reason] of [['{"a":', 'is not valid JSON'], ['[1]', 'is not a JSON object'], ['null', 'is not a JSON object'], ['"secret"', 'is not a JSON object']]) {
    assert.throws(() => parseJsonObject(text!, 'state'), (e: unknown) => isMeshidError(e, 'invalid_argument') && e.message === `state ${reason}` && !e.message.includes('secret'));
  }
  assert.equal(isJsonObject({}), true);
  assert.equal(isJsonObject([]), false);
  assert.equal(isJsonObject(null), false);
});
