import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../../src/common/duration.js';

test('durations: seconds, units, combined units and Go-style fractions', () => {
  assert.equal(parseDuration('3600'), 3_600_000);
  assert.equal(parseDuration(90), 90_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('24h0m0s'), 86_400_000);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseDuration('.5s'), 500);
  assert.equal(parseDuration('1.s'), 1000);
  assert.equal(parseDuration('1500ms'), 1500);
});

test('a duration that rounds to zero milliseconds is refused, not taken as 0', () => {
  assert.throws(() => parseDuration(0.0001, 'root_ttl'), /^MeshidError: root_ttl must be at least 1ms, got 0\.0001$/);
  assert.throws(() => parseDuration('0.0001s', 'root_ttl'), /^MeshidError: root_ttl must be at least 1ms, got "0\.0001s"$/);
});

test('digits enough to make Infinity are not a valid duration', () => {
  assert.throws(() => parseDuration(`${'9'.repeat(400)}d`, 'root_ttl'), /root_ttl ".*" is not a valid duration/);
  assert.throws(() => parseDuration('9'.repeat(400), 'root_ttl'), /root_ttl ".*" is not a valid duration/);
});

test('zero, negatives, words and spaces inside are refused with the syntax to use', () => {
  assert.throws(() => parseDuration('0s', 'x'), /x must be positive, got "0s"/);
  assert.throws(() => parseDuration('0', 'x'), /^MeshidError: x must be positive, got "0"$/);
  assert.throws(() => parseDuration(' 000 ', 'x'), /^MeshidError: x must be positive, got " 000 "$/);
  // A config file's number is seconds by definition, and the message says so.
  assert.throws(() => parseDuration(0, 'x'), /x must be a positive number of seconds, got 0/);
  for (const bad of ['-5', '-5s', '1h 30m', '90S', 'PT1H', '1e3', '', 's', '.s']) {
    assert.throws(() => parseDuration(bad, 'x'), /is not a valid duration: use seconds \(3600\) or units like 90s, 15m, 24h, 7d/, bad);
  }
});

test('formatDuration: whole units as the config takes them, exact below a minute, and what it prints parses back', () => {
  assert.equal(formatDuration(86_400_000), '1d');
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(30_000), '30s');
  // A `--timeout 500ms` or `1500ms` was echoed back as "1s" and "2s".
  assert.equal(formatDuration(500), '500ms');
  assert.equal(formatDuration(1500), '1500ms');
  for (const ms of [1, 500, 1500, 30_000, 59_999, 60_000, 5_400_000]) assert.equal(parseDuration(formatDuration(ms), 'x'), ms, `${ms}`);
});
