import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError, permissionDenied } from '../../../src/common/errors.js';
import { createLogger } from '../../../src/common/log.js';
import { CopiedAgentIdentities } from '../../../src/server/api/copied-agent-identities.js';

const A = 'spiffe://example.org/meshid/agent/east/a';
const B = 'spiffe://example.org/meshid/agent/east/b';

/** notCurrentSvid's refusal of `presentedSerial` (agent-auth.ts), as its data marks it. */
function copyRefusal(agentId: string, presentedSerial: string): MeshidError {
  return new MeshidError('permission_denied', 'must re-attest: …', { data: { agentId, supersededBy: 'current', presentedSerial } });
}

function reporter(): { copies: CopiedAgentIdentities; clock: FakeClock; warned: () => string[] } {
  const lines: string[] = [];
  const log = createLogger({ name: 'test', level: 'warn', pretty: false, destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
  const clock = new FakeClock(1_700_000_000_000);
  return { copies: new CopiedAgentIdentities(clock, log), clock, warned: () => lines.filter((l) => l.includes('two hosts hold agent')) };
}

test('a retired SVID on the connection the agent renewed on is its own late traffic; on another connection, or another SVID, a copy', () => {
  const { copies, warned } = reporter();
  copies.renewed(A, 's0', '10.0.0.1:4000');
  copies.refused(copyRefusal(A, 's0'), '10.0.0.1:4000');
  assert.equal(warned().length, 0);
  copies.refused(copyRefusal(A, 'older'), '10.0.0.1:4000');
  assert.equal(warned().length, 1, 'an SVID older than the one renewed from is a copy even on that connection');
  copies.renewed(B, 's0', '10.0.0.1:4000');
  copies.refused(copyRefusal(B, 's0'), '10.0.0.2:4000');
  assert.equal(warned().length, 2);
  assert.match(warned()[1]!, /"peer":"10\.0\.0\.2:4000"/);
});

test("the renewal's connection is remembered for 5 minutes; refusals that are no copy's are not logged", () => {
  const { copies, clock, warned } = reporter();
  copies.renewed(A, 's0', '10.0.0.1:4000');
  copies.refused(permissionDenied('must re-attest: agent a is not attested'), '10.0.0.9:1');
  clock.advance(5 * 60_000);
  // A later renewal prunes the earlier one.
  copies.renewed(B, 's0', '10.0.0.1:5000');
  copies.refused(copyRefusal(A, 's0'), '10.0.0.1:4000');
  assert.equal(warned().length, 1);
});
