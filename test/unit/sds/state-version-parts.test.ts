/** stateVersion and resourceVersion hash their parts length-prefixed: no two different inputs run together alike. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stateVersion } from '../../../src/agent/sds/secret-builder.js';

test('states that differ only in where one name ends and its version begins have different versions', () => {
  const v = 'a1b2c3d4e5f60718';
  // Run together, "default" then v reads the same as "defaul" then "t" + v.
  assert.notEqual(stateVersion(new Map([['default', v]])), stateVersion(new Map([['defaul', `t${v}`]])));
  assert.notEqual(stateVersion(new Map([['a', 'bc'], ['d', 'ef']])), stateVersion(new Map([['a', 'b'], ['cd', 'ef']])));
});
