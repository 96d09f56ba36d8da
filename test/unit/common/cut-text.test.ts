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

test('the first and last characters outside the BMP are kept whole or left out, and their BMP neighbours are cut as any character', () => {
  // U+10000 is D800 DC00, U+10FFFF is DBFF DFFF: the ends of the high-surrogate range.
  assert.equal(cutText('a\u{10000}b', 2), 'a');
  assert.equal(cutText('a\u{10FFFF}b', 2), 'a');
  assert.equal(cutText('a\u{10000}b', 3), 'a\u{10000}');
  assert.equal(cutText('a\uD7FFb', 2), 'a\uD7FF', 'U+D7FF, just below the surrogates, is a character of its own');
  assert.equal(cutText('a\uE000b', 2), 'a\uE000', 'U+E000, just above them, too');
});
