import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MeshidError } from '../../../src/common/errors.js';
import { formatSelector, parseSelector } from '../../../src/common/spiffe/selector.js';

test('the type is before the first colon and the value is all the rest', () => {
  const cases: Array<[string, string, string]> = [
    ['unix:uid:1000', 'unix', 'uid:1000'],
    ['unix:path:/usr/bin/envoy', 'unix', 'path:/usr/bin/envoy'],
    ['k8s:ns:default', 'k8s', 'ns:default'],
    ['join_token:abc', 'join_token', 'abc'],
    ['unix:sha256:0a:b', 'unix', 'sha256:0a:b'],
  ];
  for (const [input, type, value] of cases) {
    assert.deepEqual(parseSelector(input), { type, value });
    assert.equal(formatSelector({ type, value }), input);
  }
});

test('a selector without a colon, type or value is an invalid argument', () => {
  const cases: Array<[string, RegExp]> = [
    ['unix', /type:value/],
    ['', /type:value/],
    [':uid:1000', /empty type/],
    ['unix:', /empty value/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseSelector(input),
      (err) => err instanceof MeshidError && err.code === 'invalid_argument' && message.test(err.message),
    );
  }
});
