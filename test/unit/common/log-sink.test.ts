import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { HELD_BYTES_LIMIT, stderrSink, type LostLogLines } from '../../../src/common/log-sink.js';
import { fillDisk, mountTmpfs } from '../../support/tmpfs.js';
import { teardown } from '../../support/teardown.js';

test('a log file on a full disk: lines are held without throwing, written once there is room, and what was lost is reported', async (t) => {
  const dir = mountTmpfs(t, '4m');
  if (dir === undefined) return;
  const file = path.join(dir, 'meshid.log');
  const fd = fs.openSync(file, 'a');
  teardown(t).after(() => fs.closeSync(fd));
  const reports: LostLogLines[] = [];
  const sink = stderrSink((lost) => reports.push(lost), fd);
  // A whole page (tmpfs allocates pages): with the disk filled, not one byte more fits into this file.
  const before = `${'b'.repeat(4095)}\n`;
  sink.write(before);
  const filler = fillDisk(dir);

  const line = (i: number): string => `line ${i} ${'x'.repeat(1000)}\n`;
  const lines = Math.ceil(HELD_BYTES_LIMIT / line(0).length) + 10;
  for (let i = 0; i < lines; i++) sink.write(line(i));
  assert.equal(fs.readFileSync(file, 'utf8'), before, 'nothing fits while the disk is full');

  fs.rmSync(filler);
  sink.write('after\n');
  const written = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  const held = written.length - 2;
  assert.equal(written[0], before.trimEnd());
  assert.deepEqual(written.slice(1, -1), Array.from({ length: held }, (_, i) => line(i).trimEnd()), 'the held lines, in order');
  assert.equal(written.at(-1), 'after');

  await new Promise((r) => setImmediate(r));
  assert.deepEqual(reports, [{ reason: 'ENOSPC', droppedLines: lines - held }]);
  assert.ok(lines - held > 0, 'more than the hold limit: the newest were dropped');
});
