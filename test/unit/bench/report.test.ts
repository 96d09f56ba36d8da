import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatResult } from '../../../bench/report.js';

// The line: `name: value unit (ratio X vs baseline)`, the parenthesis holding nothing else.
const LINE = /^(.+): (\d+(?:\.\d\d)?) (\S+)(?: \(ratio (\d+\.\d\d) vs baseline\))?$/;

test('a result with a baseline and a target prints the ratio alone in the parenthesis and the target in the name', () => {
  const line = formatResult({ name: 'P2 FetchX509SVID first message p99, 1 client(s)', value: 1.456, unit: 'ms', ratio: 1.6234, target: 'ratio ≤ 1.5' });
  assert.equal(line, 'P2 FetchX509SVID first message p99, 1 client(s) [target ratio ≤ 1.5]: 1.46 ms (ratio 1.62 vs baseline)');
  assert.match(line, LINE);
});

test('a target without a baseline is printed too, and the line has no ratio part', () => {
  const line = formatResult({ name: 'P4 entry create → SVID on an open stream p99', value: 19.374, unit: 'ms', target: '< 1000 ms' });
  assert.equal(line, 'P4 entry create → SVID on an open stream p99 [target < 1000 ms]: 19.37 ms');
  assert.match(line, LINE);
});

test('values from 100 up are whole numbers, below 100 two decimals', () => {
  assert.equal(formatResult({ name: 'P1 baseline: crypto.sign ECDSA P-256', value: 55816.4, unit: 'sig/s' }), 'P1 baseline: crypto.sign ECDSA P-256: 55816 sig/s');
  assert.equal(formatResult({ name: 'x', value: 99.994, unit: 'MB', ratio: 1.2 }), 'x: 99.99 MB (ratio 1.20 vs baseline)');
});
