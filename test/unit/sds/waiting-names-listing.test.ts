/**
 * What one waiting-names line lists (waiting-names.test.ts has the throttle and the served lines): the first ten
 * names, each cut to 256 UTF-16 units, and how many more there were; no count of name sets left out when none was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { WaitingNamesLog } from '../../../src/agent/sds/waiting-names.js';
import { capturingLogger } from '../../support/log-lines.js';

const waitLines = (records: Array<{ msg: string }>) => records.filter((r) => /^SDS stream waits for secrets/.test(r.msg)) as Array<Record<string, unknown>>;

test('a line lists the first ten waited-for names, each cut to 256 units, and counts the rest', () => {
  const clock = new FakeClock();
  const { log, records } = capturingLogger('agent');
  const service = new WaitingNamesLog(clock);
  const nothingSigning = (): boolean => false;
  const stillAsked = (): boolean => true;

  const ten = Array.from({ length: 10 }, (_, i) => `spiffe://example.org/${String(i).padStart(2, '0')}/${'x'.repeat(300)}`);
  service.forStream(log, { uid: 1000, selectors: [] }).update(ten, nothingSigning, stillAsked);
  const [first] = waitLines(records());
  assert.ok(first !== undefined);
  assert.deepEqual(first['names'], ten.map((n) => n.slice(0, 256)), 'ten names, each cut to 256 units');
  assert.equal('moreNames' in first, false, 'ten names leave none out');
  assert.equal('otherNameSetsLeftOut' in first, false, 'no name set was left out before it');

  const twelve = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/other/${i}`);
  service.forStream(log, { uid: 1001, selectors: [] }).update(twelve, nothingSigning, stillAsked);
  const second = waitLines(records())[1];
  assert.ok(second !== undefined);
  assert.deepEqual(second['names'], twelve.slice(0, 10));
  assert.equal(second['moreNames'], 2);
});
