import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { reportedAgentVersion } from '../../../src/server/api/agent-version.js';

test('a reported agent version is kept as is; none (absent or empty, an agent of an earlier version) is undefined', () => {
  assert.equal(reportedAgentVersion('0.1.0+6ebd53b-dirty'), '0.1.0+6ebd53b-dirty');
  assert.equal(reportedAgentVersion('a b ~'), 'a b ~');
  assert.equal(reportedAgentVersion('x'.repeat(255)), 'x'.repeat(255));
  assert.equal(reportedAgentVersion(''), undefined);
  assert.equal(reportedAgentVersion(undefined), undefined);
});

test('a version longer than 255 characters or with anything but printable ASCII is invalid_argument, saying why', () => {
  const refused = (value: string, message: RegExp) =>
    assert.throws(() => reportedAgentVersion(value), (err) => isMeshidError(err, 'invalid_argument') && message.test(err.message));
  refused('x'.repeat(256), /256 characters long; at most 255/);
  refused('1.0\t', /U\+0009 at index 3/);
  refused('1.0\u007f', /U\+007F at index 3/);
  refused('1.0\u2028', /U\+2028/);
});
