import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../../../src/common/clock.js';
import { createLogger } from '../../../src/common/log.js';
import { issuedChainCheckTime, MAX_ISSUED_AHEAD_MS, SERVER_BACKDATE_MS, ServerClock, serverCertificateTimeProblem } from '../../../src/agent/client/server-clock.js';

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: () => string[] } {
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'debug', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  return { log, lines: () => raw.join('').split('\n').filter((l) => l !== '') };
}

test('a chain the server has just signed is checked at its notBefore while that is ahead of this host, else now', () => {
  assert.equal(issuedChainCheckTime(5_000, 1_000, 'the X509-SVID'), 5_000);
  assert.equal(issuedChainCheckTime(1_000, 5_000, 'the X509-SVID'), 5_000);
  assert.equal(issuedChainCheckTime(1_000 + MAX_ISSUED_AHEAD_MS, 1_000, 'the X509-SVID'), 1_000 + MAX_ISSUED_AHEAD_MS);
});

test('a chain starting more than 5 min in this host\'s future is refused naming both clocks; the behind warning is left to that refusal', () => {
  const now = Date.UTC(2026, 0, 1);
  assert.throws(
    () => issuedChainCheckTime(now + 2 * 3_600_000, now, 'the agent SVID'),
    (err: Error & { code?: string }) =>
      err.code === 'invalid_argument' &&
      /^the agent SVID starts at 2026-01-01T02:00:00.000Z, 2h after this host's clock \(2026-01-01T00:00:00.000Z\): more than the 5m/.test(err.message) &&
      /Synchronise the clocks/.test(err.message),
  );
  const clock = new FakeClock(now);
  const { log, lines } = capturingLogger();
  new ServerClock(clock, log).observe(now + 2 * 3_600_000, now);
  assert.deepEqual(lines(), []);
});

test('clocks within the back-dating and the 60 s allowance log nothing', () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const { log, lines } = capturingLogger();
  const skew = new ServerClock(clock, log);
  skew.observe(clock.now() - SERVER_BACKDATE_MS, clock.now());
  // This host 50 s ahead: inside the JWT-SVID leeway.
  skew.observe(clock.now() - 50_000 - SERVER_BACKDATE_MS, clock.now());
  // Server 8 s ahead: its certificate is still valid by this clock thanks to the back-dating.
  skew.observe(clock.now() + 8_000 - SERVER_BACKDATE_MS, clock.now());
  assert.deepEqual(lines(), []);
});

test('this host 5 min ahead: one warning naming the lower bound of the skew, repeated at most hourly', () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const { log, lines } = capturingLogger();
  const skew = new ServerClock(clock, log);
  const sentAt = clock.now();
  clock.advance(2_000);
  // The server signed at sentAt - 5 min (its clock), stamping notBefore 10 s before that.
  skew.observe(sentAt - 300_000 - SERVER_BACKDATE_MS, sentAt);
  skew.observe(clock.now() - 300_000 - SERVER_BACKDATE_MS, clock.now());
  assert.equal(lines().length, 1);
  assert.match(lines()[0]!, /this host's clock is at least 5m ahead of meshid-server's/);
  clock.advance(3_600_000);
  skew.observe(clock.now() - 300_000 - SERVER_BACKDATE_MS, clock.now());
  assert.equal(lines().length, 2);
  assert.match(lines()[1]!, /"suppressedSinceLast":1/);
});

test("the TLS handshake's time refusals are named as a clock problem, others not", () => {
  const now = Date.UTC(2026, 0, 1);
  assert.match(serverCertificateTimeProblem('No connection established. Last error: Error: certificate is not yet valid.', now)!, /not valid yet by this host's clock \(2026-01-01T00:00:00.000Z\): this host's clock is behind/);
  assert.match(serverCertificateTimeProblem('Last error: Error: certificate has expired', now)!, /expired by this host's clock .*ahead of the server's/);
  assert.equal(serverCertificateTimeProblem('connect ECONNREFUSED 127.0.0.1:8081', now), undefined);
});

test('an SVID signed just now that has expired by this clock: one error per 10 min naming both clocks, the skew and the lifetime, and a problem for the ready check until an SVID is accepted', () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 2));
  const { log, lines } = capturingLogger();
  const skew = new ServerClock(clock, log);
  // The server's clock reads 00:00 (2 h behind); it signs for 1 h.
  const notBefore = Date.UTC(2026, 0, 1) - SERVER_BACKDATE_MS;
  skew.observe(notBefore, clock.now(), Date.UTC(2026, 0, 1, 1));
  skew.observe(notBefore, clock.now(), Date.UTC(2026, 0, 1, 1));
  assert.equal(lines().length, 1);
  assert.match(lines()[0]!, /"level":50/);
  assert.match(lines()[0]!, /this host's clock \(2026-01-01T02:00:00.000Z\) is at least 2h ahead of meshid-server's \(2026-01-01T00:00:00.000Z\)/);
  assert.match(lines()[0]!, /valid for 1h0?m?10s until 2026-01-01T01:00:00.000Z, has expired by this clock/);
  assert.match(skew.problem() ?? '', /Synchronise this host's clock/);
  clock.advance(600_000);
  skew.observe(notBefore + 600_000, clock.now(), Date.UTC(2026, 0, 1, 1, 10));
  assert.equal(lines().length, 2);
  assert.match(lines()[1]!, /"suppressedSinceLast":1/);
  // Clocks put right: the next SVID is accepted and the problem is gone.
  skew.observe(clock.now() - SERVER_BACKDATE_MS, clock.now(), clock.now() + 3_600_000);
  assert.equal(skew.problem(), undefined);
});

test("the agent SVID refused as expired while this clock takes it for valid: an error naming both clocks and the skew, a problem until the server accepts the SVID again", () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const { log, lines } = capturingLogger();
  const skew = new ServerClock(clock, log);
  skew.refusedAsExpired(Date.UTC(2026, 0, 1, 1), Date.UTC(2026, 0, 1, 2));
  skew.refusedAsExpired(Date.UTC(2026, 0, 1, 1), Date.UTC(2026, 0, 1, 2));
  assert.equal(lines().length, 1);
  assert.match(lines()[0]!, /"level":50/);
  assert.match(lines()[0]!, /this host's clock \(2026-01-01T00:00:00.000Z\) is at least 2h behind meshid-server's \(2026-01-01T02:00:00.000Z\)/);
  assert.match(lines()[0]!, /Synchronise the clocks/);
  // An older server names only the notAfter: a lower bound.
  skew.refusedAsExpired(Date.UTC(2026, 0, 1, 1), undefined);
  assert.match(skew.problem() ?? '', /at least 1h behind meshid-server's \(2026-01-01T01:00:00.000Z or later\)/);
  skew.serverAccepted();
  assert.equal(skew.problem(), undefined);
});

test('ahead of the server by more than one SVID lifetime but less than another: accepting the longer-lived SVID leaves the problem, a skew shown below the shorter lifetime ends it', () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 2));
  const { log } = capturingLogger();
  const skew = new ServerClock(clock, log);
  // The server's clock reads 00:00 (2 h behind); it signs one entry's SVIDs for 1 h and the agent's or another's for 24 h.
  const notBefore = Date.UTC(2026, 0, 1) - SERVER_BACKDATE_MS;
  skew.observe(notBefore, clock.now(), Date.UTC(2026, 0, 1, 1));
  skew.observe(notBefore, clock.now(), Date.UTC(2026, 0, 2));
  assert.match(skew.problem() ?? '', /at least 2h ahead of meshid-server's/, 'the 1 h SVIDs are still refused here');
  // The other order within one batch finds it too.
  const other = new ServerClock(clock, log);
  other.observe(notBefore, clock.now(), Date.UTC(2026, 0, 2));
  other.observe(notBefore, clock.now(), Date.UTC(2026, 0, 1, 1));
  assert.match(other.problem() ?? '', /ahead of meshid-server's/);
  // An hour on, the clocks brought to 30 min apart: a 24 h SVID accepted shows the skew under 1 h, and the problem is gone.
  clock.set(Date.UTC(2026, 0, 1, 3));
  skew.observe(Date.UTC(2026, 0, 1, 2, 30) - SERVER_BACKDATE_MS, clock.now(), Date.UTC(2026, 0, 2, 2, 30));
  assert.equal(skew.problem(), undefined);
});
