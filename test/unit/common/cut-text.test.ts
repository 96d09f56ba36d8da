import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cutText } from '../../../src/common/cut-text.js';

/** No lone surrogate: one would come back from UTF-8 as U+FFFD. */
const wellFormed = (s: string): boolean => Buffer.from(s).toString('utf8') === s;

test('a value is cut to the limit, one unit shorter where the limit falls inside a character outside the BMP', () => {
  assert.equal(cutText('abcdef', 4), 'abcd');
  assert.equal(cutText('abc', 4), 'abc');
  assert.equal(cutText('a\u{1F512}b', 2), 'a', 'the emoji\'s first half is not kept alone');
  assert.equal(cutText('a\u{1F512}b', 3), 'a\u{1F512}');
  assert.equal(cutText('\u{1F512}', 1), '');
  assert.equal(cutText('é€é€', 3), 'é€é', 'characters of the BMP count one unit whatever their UTF-8 length');
  for (let max = 0; max < 12; max++) assert.ok(wellFormed(cutText('x\u{1F512}\u{1F512}é\u{1F512}\u{1F512}\u{1F512}', max)), `at ${max}`);
});
