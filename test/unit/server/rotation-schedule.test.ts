import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CaRecord } from '../../../src/server/ca/ca-journal.js';
import type { LoadedAuthority } from '../../../src/server/ca/loaded-authority.js';
import { nextRotationDecisionAt, preparedRootActivatesAt } from '../../../src/server/ca/rotation-schedule.js';

const DAY = 86_400_000;
const SETTINGS = { intermediateTtlMs: 7 * DAY, longestX509SvidTtlMs: DAY, jwtSvidTtlMs: 300_000, rootActivationDelayMs: 50 * DAY };

/** Only the journal row is read (no key, no certificate). */
function authorities(...records: Array<Pick<CaRecord, 'kind' | 'datacenter' | 'state' | 'notBefore' | 'notAfter'> & { createdAt?: number }>): Map<string, LoadedAuthority> {
  return new Map(
    records.map((r, i) => [`a${i}`, { record: { id: `a${i}`, keyId: `k${i}`, createdAt: r.notBefore, updatedAt: r.notBefore, ...r } } as LoadedAuthority]),
  );
}

test('an active root with a prepared successor falls due when it can no longer cover a whole intermediate, not a whole SVID', () => {
  const set = authorities(
    { kind: 'root', datacenter: '', state: 'active', notBefore: 0, notAfter: 100 * DAY },
    // Its activation delay (50d from day 50) ends after that point: the cover point is the one that decides.
    { kind: 'root', datacenter: '', state: 'prepared', notBefore: 50 * DAY, notAfter: 150 * DAY },
  );
  assert.equal(nextRotationDecisionAt(set, SETTINGS, 60 * DAY), 93 * DAY + 1);
});

test('an active JWT key with a prepared successor falls due when it can no longer cover a whole JWT-SVID', () => {
  const set = authorities(
    { kind: 'jwt', datacenter: '', state: 'active', notBefore: 0, notAfter: DAY },
    { kind: 'jwt', datacenter: '', state: 'prepared', notBefore: DAY / 2, notAfter: 1.5 * DAY },
  );
  assert.equal(nextRotationDecisionAt(set, SETTINGS, DAY / 2), DAY - 300_000 + 1);
});

test('a prepared root takes over after its activation delay, or sooner once the active root cannot cover an intermediate; with no active root, at once', () => {
  const active = { notBefore: 0, notAfter: 100 * DAY };
  assert.equal(preparedRootActivatesAt({ createdAt: 50 * DAY }, active, SETTINGS, 60 * DAY), 93 * DAY + 1);
  assert.equal(preparedRootActivatesAt({ createdAt: 30 * DAY }, active, SETTINGS, 60 * DAY), 80 * DAY);
  assert.equal(preparedRootActivatesAt({ createdAt: 50 * DAY }, undefined, SETTINGS, 60 * DAY), 60 * DAY);
});

test("an intermediate's half-life is a decision until its own datacenter has a successor prepared, whatever other datacenters have", () => {
  const east = { kind: 'intermediate', datacenter: 'east', state: 'active', notBefore: 0, notAfter: 7 * DAY } as const;
  const westPrepared = { kind: 'intermediate', datacenter: 'west', state: 'prepared', notBefore: 0, notAfter: 7 * DAY } as const;
  assert.equal(nextRotationDecisionAt(authorities(east, westPrepared), SETTINGS, DAY), 3.5 * DAY);
  const eastPrepared = { ...westPrepared, datacenter: 'east' };
  assert.equal(nextRotationDecisionAt(authorities(east, eastPrepared), SETTINGS, DAY), 6 * DAY + 1, 'then only the takeover is left');
});

test('a tainted authority, like an old one, falls due when it expires (it leaves the journal and the bundle then)', () => {
  const ended = { kind: 'intermediate', datacenter: 'east', notBefore: 0, notAfter: 2 * DAY } as const;
  // The plan removes it once notAfter <= now: at notAfter or the instant after, not at some later decision.
  const expiresAt = (next: number): boolean => next === 2 * DAY || next === 2 * DAY + 1;
  assert.ok(expiresAt(nextRotationDecisionAt(authorities({ ...ended, state: 'tainted' }), SETTINGS, DAY)));
  assert.ok(expiresAt(nextRotationDecisionAt(authorities({ ...ended, state: 'old' }), SETTINGS, DAY)));
  assert.equal(nextRotationDecisionAt(authorities(), SETTINGS, DAY), Number.POSITIVE_INFINITY);
});
