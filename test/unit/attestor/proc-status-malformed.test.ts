/** The /proc parsers refuse what they cannot read whole, rather than attest with an undefined or NaN id. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProcStatus, parseStartTime } from '../../../src/agent/attestor/proc-status.js';

const STATUS = ['Name:\tapp', 'State:\tS (sleeping)', 'Uid:\t1000\t1000\t1000\t1000', 'Gid:\t1000\t1000\t1000\t1000', 'Groups:\t1000', ''].join('\n');

test('a Uid line with only the real uid, an id with trailing junk, or an empty State is refused', () => {
  assert.throws(() => parseProcStatus(STATUS.replace(/^Uid:.*$/m, 'Uid:\t1000')), /Uid\/Gid lines are incomplete/);
  assert.throws(() => parseProcStatus(STATUS.replace(/^Uid:.*$/m, 'Uid:\t1000\t0x')), /Uid line has a non-numeric id "0x"/);
  assert.throws(() => parseProcStatus(STATUS.replace(/^Groups:.*$/m, 'Groups:\t10 2a')), /Groups line has a non-numeric id "2a"/);
  assert.throws(() => parseProcStatus(STATUS.replace(/^State:.*$/m, 'State:\t')), /no State line/);
});

test('a stat line whose 22nd field is not a number has no start time', () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  const stat = (start: string): string => `42 (a (b) c) ${fields.slice(0, 19).join(' ')} ${start} ${fields.slice(20).join(' ')}`;
  assert.equal(parseStartTime(stat('123456')), '123456');
  assert.throws(() => parseStartTime(stat('12x')), /no start time/);
  assert.throws(() => parseStartTime(stat('-1')), /no start time/);
});
