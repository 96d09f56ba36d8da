import type { Clock } from '../../common/clock.js';
import { formatDuration } from '../../common/duration.js';
import { invalidArgument } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { NEW_JOIN_TOKEN } from '../join-token-ways.js';

/**
 * How far meshid-server back-dates the notBefore of what it signs (server/ca/authority-factory.ts BACKDATE_MS; SPIRE
 * uses 10 s as well). Repeated here rather than imported: the agent does not load the server's code.
 */
export const SERVER_BACKDATE_MS = 10_000;

/**
 * How far ahead of the server this host's clock may be before it is worth a warning: the JWT-SVID leeway (60 s, as
 * go-jose's), past which tokens a peer was issued shortly before are refused here as expired.
 */
export const AHEAD_WARN_MS = 60_000;

/**
 * How far in this host's future a certificate the server has just signed may start and still be accepted. A clock
 * that far off is broken, not drifting, and the agent cannot tell whose it is: accepting would replace SVIDs valid now
 * with ones nothing here (nor on hosts with the right time) accepts until then, renew them only from that start, and,
 * for its own SVID, leave the agent locked out of a server whose clock is put right meanwhile. Refused, the SVIDs in
 * use stay (and the error names the clocks); the 5 min is as much as Kerberos tolerates by default.
 */
export const MAX_ISSUED_AHEAD_MS = 5 * 60_000;

/** One warning per direction per hour while the clocks disagree: every signing answer would show it again. */
const WARN_EVERY_MS = 3_600_000;

/**
 * One error per kind every 10 min while a skew stops the agent outright (nothing it is signed is accepted, or the
 * server refuses its SVID): more often than the warnings, as nothing gets renewed meanwhile, yet not once per retry.
 */
const ERROR_EVERY_MS = 600_000;

/**
 * The instant to verify a certificate chain meshid-server has just signed for this agent (its agent SVID, a workload
 * X.509-SVID): now, or the leaf's notBefore when that is still ahead of this host's clock.
 *
 * A server whose clock runs ahead of this host's by more than its 10 s back-dating signs certificates that start in
 * this host's future. Checked at "now" they were all refused: the join token spent on an Attest whose answer the agent
 * then threw away, and no workload SVID ever accepted (each new one starts in the future too). The server is
 * authenticated and decides a certificate's lifetime; what this host's clock says about it is reported
 * (ServerClock.observe), not a reason to serve nothing, up to MAX_ISSUED_AHEAD_MS: a chain starting later is refused
 * (invalid_argument naming `what` and both clocks). Everything else about the chain is checked as before.
 */
export function issuedChainCheckTime(leafNotBefore: number, now: number, what: string): number {
  const ahead = leafNotBefore - now;
  if (ahead > MAX_ISSUED_AHEAD_MS) {
    throw invalidArgument(
      `${what} starts at ${new Date(leafNotBefore).toISOString()}, ${formatDuration(ahead)} after this host's clock ` +
        `(${new Date(now).toISOString()}): more than the ${formatDuration(MAX_ISSUED_AHEAD_MS)} a clock behind meshid-server's is allowed, ` +
        "so it is refused and what is in use kept. This host's clock or the server's is wrong: Synchronise the clocks (chrony or ntpd; timedatectl status)",
    );
  }
  return Math.max(now, leafNotBefore);
}

/**
 * Reads the skew between this host's clock and meshid-server's from what the server signs: it stamps notBefore with
 * its own clock minus SERVER_BACKDATE_MS at some instant between the agent sending the request and receiving the
 * answer, so `notBefore + backdate - receivedAt` is a lower bound on how far the server is ahead, and
 * `sentAt - (notBefore + backdate)` one on how far this host is. Either past its limit is logged, with the figure and
 * what it breaks, since the symptoms alone (peers' certificates "not yet valid" after each renewal, JWT-SVIDs refused
 * as expired, renewals early) point nowhere near a clock.
 */
export class ServerClock {
  private readonly throttle: LogThrottle;
  private readonly errors: LogThrottle;
  /**
   * An SVID the server signed expired here on arrival (this clock far ahead), with the shortest lifetime seen so: held
   * until the skew is shown below that lifetime, not merely until an SVID living longer is accepted (entries' TTLs
   * differ, and the agent SVID's is its own).
   */
  private ahead: { problem: string; lifetime: number } | undefined;
  /** The server's last word on the agent SVID: refused as expired while this clock takes it for valid, or nothing. */
  private behindProblem: string | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.throttle = new LogThrottle(clock, WARN_EVERY_MS);
    this.errors = new LogThrottle(clock, ERROR_EVERY_MS);
  }

  /**
   * Why the agent cannot keep its SVIDs renewed for a skew between the clocks, for its ready check; undefined while
   * the last evidence shows none (an SVID signed and accepted since, the server accepting the agent SVID again).
   */
  problem(): string | undefined {
    return this.behindProblem ?? this.ahead?.problem;
  }

  /**
   * The server refused the agent SVID as expired at `notAfter` by its clock (reading `serverTime`, when it said),
   * while this host's clock takes it for valid: this clock is behind by at least what the server's reading (or the
   * notAfter) is ahead of it. The agent does not renew an SVID it takes for young, so it would otherwise present it
   * for ever, refused each time.
   */
  refusedAsExpired(notAfter: number, serverTime: number | undefined): void {
    const now = this.clock.now();
    const serverAt = serverTime ?? notAfter;
    const behind = serverAt - now;
    this.behindProblem =
      `this host's clock (${new Date(now).toISOString()}) is at least ${formatDuration(behind)} behind meshid-server's ` +
      `(${new Date(serverAt).toISOString()}${serverTime === undefined ? ' or later' : ''}): the server refuses the agent SVID as expired at ` +
      `${new Date(notAfter).toISOString()}, which this clock still takes for valid, so nothing is renewed or signed. Synchronise the ` +
      "clocks (chrony or ntpd; timedatectl status); the agent keeps its SVID and retries meanwhile. Once this host's clock is right " +
      `the SVID is expired here too, and the agent needs to be restarted with ${NEW_JOIN_TOKEN}`;
    const admitted = this.errors.admit('refused-as-expired');
    if (admitted === undefined) return;
    this.log.error({ skewMs: behind, serverTime: new Date(serverAt).toISOString(), hostTime: new Date(now).toISOString(), ...admitted }, this.behindProblem);
  }

  /** The server accepted the agent SVID (a Sync stream opened): whatever refused it as expired is over. */
  serverAccepted(): void {
    this.behindProblem = undefined;
  }

  /**
   * A certificate the server signed for a request sent at `sentAt` (this host's clock), answered just now; `notAfter`
   * its end, when known.
   */
  observe(notBefore: number, sentAt: number, notAfter = Number.POSITIVE_INFINITY): void {
    const receivedAt = this.clock.now();
    const serverSignedAt = notBefore + SERVER_BACKDATE_MS;
    const behind = serverSignedAt - receivedAt;
    const ahead = sentAt - serverSignedAt;
    if (notAfter <= receivedAt) {
      this.expiredOnArrival(notBefore, notAfter, serverSignedAt, sentAt);
      return;
    }
    // This clock read at most receivedAt when the server signed: ahead of it by less than that lifetime, an SVID of
    // the lifetime seen expired on arrival would be accepted now.
    if (this.ahead !== undefined && receivedAt - serverSignedAt < this.ahead.lifetime) this.ahead = undefined;
    // Behind by more than the back-dating: a certificate signed now is not valid yet by this host's clock. Past
    // MAX_ISSUED_AHEAD_MS it is refused instead, and that refusal says so.
    if (notBefore > receivedAt && notBefore - receivedAt <= MAX_ISSUED_AHEAD_MS) {
      const admitted = this.throttle.admit('behind');
      if (admitted === undefined) return;
      this.log.warn(
        { skewMs: behind, signedAt: new Date(serverSignedAt).toISOString(), hostTime: new Date(receivedAt).toISOString(), ...admitted },
        `this host's clock is at least ${formatDuration(behind)} behind meshid-server's: what the server signs now is not valid yet by this clock. ` +
          'It is accepted and served, but programs here refuse certificates (peers\' SVIDs after each renewal) and JWT-SVIDs ' +
          'as not yet valid until this clock catches up; synchronise this host\'s clock (chrony or ntpd; timedatectl status)',
      );
    } else if (ahead > AHEAD_WARN_MS) {
      const admitted = this.throttle.admit('ahead');
      if (admitted === undefined) return;
      this.log.warn(
        { skewMs: ahead, signedAt: new Date(serverSignedAt).toISOString(), hostTime: new Date(sentAt).toISOString(), ...admitted },
        `this host's clock is at least ${formatDuration(ahead)} ahead of meshid-server's: programs here take certificates and ` +
          'JWT-SVIDs to expire that much early (refusing JWT-SVIDs near their end), and SVIDs are renewed early; a skew ' +
          "beyond an SVID's lifetime makes every new SVID look expired here. Synchronise this host's clock (chrony or ntpd; timedatectl status)",
      );
    }
  }

  /**
   * A certificate signed just now that has already expired by this host's clock: this clock is ahead of the server's
   * by more than an SVID's lifetime, so every SVID the server signs is refused here as expired (and every renewal
   * asks again), while those served run out. An error, not the hourly warning: nothing works until the clocks agree.
   */
  private expiredOnArrival(notBefore: number, notAfter: number, serverSignedAt: number, sentAt: number): void {
    const ahead = sentAt - serverSignedAt;
    const problem =
      `this host's clock (${new Date(sentAt).toISOString()}) is at least ${formatDuration(ahead)} ahead of meshid-server's ` +
      `(${new Date(serverSignedAt).toISOString()}): an SVID the server signed just now, valid for ${formatDuration(notAfter - notBefore)} ` +
      `until ${new Date(notAfter).toISOString()}, has expired by this clock, so none it signs is accepted and the SVIDs served here run ` +
      "out. Synchronise this host's clock (chrony or ntpd; timedatectl status); the agent keeps asking meanwhile, with its backoff";
    this.ahead = { problem, lifetime: Math.min(this.ahead?.lifetime ?? Number.POSITIVE_INFINITY, notAfter - notBefore) };
    const admitted = this.errors.admit('expired-on-arrival');
    if (admitted === undefined) return;
    this.log.error({ skewMs: ahead, signedAt: new Date(serverSignedAt).toISOString(), hostTime: new Date(sentAt).toISOString(), ...admitted }, problem);
  }
}

/** OpenSSL's words, as grpc-js passes them on, for a server certificate outside its validity by this host's clock. */
const SERVER_CERT_OUT_OF_TIME = /certificate is not yet valid|certificate has expired/i;

/**
 * What to tell the operator when the TLS handshake refused meshid-server's certificate for its validity, or undefined
 * for any other failure. Not an outage, as grpc-js's UNAVAILABLE suggests: a server certificate "not yet valid" is
 * one made moments ago (a server restart, its SVID renewed) judged by a clock behind the server's; "expired" is a
 * clock ahead of it, or a server no longer renewing its SVID. Retrying works only once the clocks agree.
 */
export function serverCertificateTimeProblem(message: string, now: number): string | undefined {
  if (!SERVER_CERT_OUT_OF_TIME.test(message)) return undefined;
  const which = /not yet valid/i.test(message) ? 'not valid yet' : 'expired';
  return (
    `meshid-server's certificate is ${which} by this host's clock (${new Date(now).toISOString()}): this host's clock ` +
    `is ${which === 'expired' ? 'ahead of' : 'behind'} the server's, or the server's is wrong. Synchronise the clocks (chrony or ntpd; ` +
    'timedatectl status); retrying meanwhile'
  );
}
