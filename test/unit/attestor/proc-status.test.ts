import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { parseProcStatus, parseStartTime } from '../../../src/agent/attestor/proc-status.js';

const STATUS = [
  'Name:\tnginx',
  'Umask:\t0022',
  'State:\tS (sleeping)',
  'Tgid:\t4242',
  'Pid:\t4242',
  'Uid:\t1000\t0\t0\t0',
  'Gid:\t1001\t50\t50\t50',
  'FDSize:\t64',
  'Groups:\t4 27 1001 ',
  'VmPeak:\t  12345 kB',
  '',
].join('\n');

test('status gives state, real and effective ids and supplementary groups', () => {
  assert.deepEqual(parseProcStatus(STATUS), {
    state: 'S',
    realUid: 1000,
    effectiveUid: 0,
    realGid: 1001,
    effectiveGid: 50,
    groups: [4, 27, 1001],
  });
});

test('an empty Groups line means no supplementary groups', () => {
  assert.deepEqual(parseProcStatus(STATUS.replace('Groups:\t4 27 1001 ', 'Groups:\t')).groups, []);
});

test('malformed status is rejected, naming the line', () => {
  const cases: Array<[string, RegExp]> = [
    [STATUS.replace(/^State:.*$/m, ''), /State/],
    [STATUS.replace(/^Uid:.*$/m, ''), /no Uid line/],
    [STATUS.replace(/^Gid:.*$/m, 'Gid:\t1001'), /incomplete/],
    [STATUS.replace(/^Groups:.*$/m, ''), /no Groups line/],
    [STATUS.replace('Uid:\t1000', 'Uid:\tx'), /non-numeric/],
  ];
  for (const [text, message] of cases) assert.throws(() => parseProcStatus(text), message);
});

test('our own /proc/self/status parses to our own ids', () => {
  const s = parseProcStatus(fs.readFileSync('/proc/self/status', 'utf8'));
  assert.equal(s.effectiveUid, process.geteuid!());
  assert.equal(s.realGid, process.getgid!());
  // process.getgroups() adds the effective gid to what getgroups(2) returns.
  const withEgid = [...new Set([...s.groups, process.getegid!()])].sort();
  assert.deepEqual(withEgid, [...new Set(process.getgroups!())].sort());
});

test('start time is field 22 of stat, counted after a command name with spaces and parentheses', () => {
  const tail = 'S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10';
  assert.equal(parseStartTime(`4242 (nginx) ${tail}`), '987654');
  assert.equal(parseStartTime(`4242 (a) (b c) ) ${tail}`), '987654');
  assert.throws(() => parseStartTime('4242 nginx S 1'), /command name/);
  assert.throws(() => parseStartTime('4242 (nginx) S 1 2'), /start time/);
});

test('our own start time does not change between reads', () => {
  const a = parseStartTime(fs.readFileSync('/proc/self/stat', 'utf8'));
  assert.match(a, /^\d+$/);
  assert.equal(parseStartTime(fs.readFileSync('/proc/self/stat', 'utf8')), a);
});

test('the real and effective ids are the first two of the Uid and Gid lines, not the saved or file-system ones', () => {
  const s = parseProcStatus('State:\tS (sleeping)\nUid:\t10\t11\t12\t13\nGid:\t20\t21\t22\t23\nGroups:\t\n');
  assert.deepEqual([s.realUid, s.effectiveUid, s.realGid, s.effectiveGid], [10, 11, 20, 21]);
});
