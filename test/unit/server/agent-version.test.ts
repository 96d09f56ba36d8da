import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { AgentVersionRecorder, reportedAgentVersion } from '../../../src/server/api/agent-version.js';
import type { AttestedAgent } from '../../../src/server/datastore/datastore.js';
import { FakeClock } from '../../../src/common/clock.js';
import { storageError } from '../../../src/server/datastore/sqlite-errors.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';

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

test('the recorder writes a version only when it changed, forgets it when a Sync reports none, and a datastore that cannot write it is told once a minute, not at every Sync open', async () => {
  const clock = new FakeClock(Date.parse('2026-12-01T00:00:00Z'));
  const { log, records } = capturingLogger('meshid-server');
  const written: string[] = [];
  let failing = false;
  const ds = {
    setAgentVersion: async (id: string, version: string | undefined): Promise<void> => {
      if (failing) throw storageError(new Error('SQLITE_FULL: database or disk is full'));
      written.push(`${id}=${version ?? '(none)'}`);
    },
  };
  const recorder = new AgentVersionRecorder({ ds, clock, log });
  const agent = (agentVersion?: string): AttestedAgent => ({
    spiffeId: 'spiffe://example.org/meshid/agent/dc1/a', datacenter: 'dc1', selectors: [], certSerial: '01', certNotAfter: 0,
    attestedAt: 0, updatedAt: 0, banned: false, ...(agentVersion !== undefined && { agentVersion }),
  });
  await recorder.record(agent('0.1.0'), '0.1.0');
  await recorder.record(agent(), undefined);
  await recorder.record(agent(), '');
  assert.deepEqual(written, [], 'the same version, or none where none is stored, writes nothing');
  await recorder.record(agent('0.1.0'), '0.2.0');
  assert.deepEqual(written, ['spiffe://example.org/meshid/agent/dc1/a=0.2.0']);
  // Rolled back to a build that reports none (absent or empty on the wire): the stored version goes.
  await recorder.record(agent('0.2.0'), '');
  await recorder.record(agent('0.2.0'), undefined);
  assert.deepEqual(written.slice(1), ['spiffe://example.org/meshid/agent/dc1/a=(none)', 'spiffe://example.org/meshid/agent/dc1/a=(none)']);
  assert.ok(records().some((r) => r.msg === 'agent reports no version (a build older than version reporting): the one stored is forgotten' && r.previousVersion === '0.2.0'));
  written.length = 0;

  failing = true;
  for (let i = 0; i < 5; i++) await recorder.record(agent('0.1.0'), '0.2.0');
  assert.deepEqual(written, []);
  const warnings = () => records().filter((r) => r.level === LEVEL.warn && r.msg === 'cannot record the version the agent reports');
  assert.equal(warnings().length, 1, 'five failed writes in a minute: one line');
  clock.advance(60_000);
  await recorder.record(agent('0.1.0'), '0.2.0');
  assert.equal(warnings().length, 2);
  assert.equal(warnings()[1]!.suppressedSinceLast, 4, 'saying how many were left out');
});
