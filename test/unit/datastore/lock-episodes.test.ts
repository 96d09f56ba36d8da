/**
 * SqliteLockEpisodes on its own: the lines an operator gets while another process holds the datastore locked, over
 * a lock that lasts several minutes and a clock stepped back (storage-failures.test.ts covers one real lock).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../../../src/common/clock.js';
import { createLogger } from '../../../src/common/log.js';
import { SqliteLockEpisodes } from '../../../src/server/datastore/sqlite-lock-episodes.js';
import { LEVEL, parseLogLines, type LogRecord } from '../../support/log-lines.js';

/** The operator is promised a line a minute while a lock lasts. */
const MINUTE = 60_000;

function episodes(): { clock: FakeClock; locks: SqliteLockEpisodes; lines: () => LogRecord[] } {
  const clock = new FakeClock();
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  const locks = new SqliteLockEpisodes(clock, log, '/data/datastore.sqlite3', () => 5000);
  return { clock, locks, lines: () => parseLogLines(raw.join('')) };
}

test('a lock that lasts three minutes: one line a minute, each counting only the writes refused since the last, and the episode total', () => {
  const { clock, locks, lines } = episodes();
  locks.refused();
  assert.equal(lines().length, 1);
  assert.equal(lines()[0]!['busyTimeoutMs'], 5000);
  for (let minute = 1; minute <= 3; minute++) {
    // Five refusals within the minute, none of them logged.
    for (let i = 0; i < 5; i++) {
      clock.advance(10_000);
      locks.refused();
    }
    assert.equal(lines().length, minute, `no line within minute ${minute}`);
    clock.advance(MINUTE - 50_000);
    locks.refused();
    const l = lines();
    assert.equal(l.length, minute + 1, JSON.stringify(l));
    const last = l.at(-1)!;
    assert.equal(last.level, LEVEL.warn);
    assert.match(last.msg, /still refused/);
    assert.equal(last['refusedSinceLast'], 6, 'the refusals since the previous line only');
    assert.equal(last['refused'], 1 + 6 * minute);
    assert.equal(last['refusingForMs'], minute * MINUTE);
  }
  locks.written();
  const end = lines().at(-1)!;
  assert.equal(end.level, LEVEL.info);
  assert.match(end.msg, /succeed again/);
  assert.equal(end['refused'], 19);
  assert.equal(end['refusingForMs'], 3 * MINUTE);
  // Written again with no lock: nothing more to say.
  locks.written();
  assert.equal(lines().length, 5);
});

test('a clock stepped back during a lock: the next refusal is logged at once, not a minute after the step', () => {
  const { clock, locks, lines } = episodes();
  clock.advance(10 * MINUTE);
  locks.refused();
  clock.advance(-5 * MINUTE); // the host clock stepped back
  locks.refused();
  assert.equal(lines().length, 2, JSON.stringify(lines()));
  assert.match(lines()[1]!.msg, /still refused/);
  assert.equal(lines()[1]!['refusingForMs'], 0, 'never a negative duration');
});

test('a clock stepped back before a lock ends: the line saying writes succeed again gives 0 ms, never a negative duration', () => {
  const { clock, locks, lines } = episodes();
  clock.advance(10 * MINUTE);
  locks.refused();
  clock.advance(-5 * MINUTE); // the host clock stepped back
  locks.written();
  const end = lines().at(-1)!;
  assert.match(end.msg, /succeed again/);
  assert.equal(end['refusingForMs'], 0);
  assert.equal(end['refused'], 1);
});
