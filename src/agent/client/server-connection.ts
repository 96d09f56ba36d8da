import type { ClientReadableStream } from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../../common/clock.js';
import { formatDuration } from '../../common/duration.js';
import { isMeshidError, MeshidError, unavailable, type ErrorCode } from '../../common/errors.js';
import { fromServiceError } from '../../common/grpc-status.js';
import type { Logger } from '../../common/log.js';
import type { IdentityCache } from '../cache/identity-cache.js';
import type { SvidIssuer } from '../cache/svid-issuer.js';
import type { AgentIdentity } from './agent-identity.js';
import { Backoff } from './backoff.js';
import { budgetRefusalWaitMs, retryPushbackWaitMs } from './budget-refusal.js';
import type { SyncUpdateMessage } from './messages.js';
import { NodeClient } from './node-client.js';
import { OutageLog } from '../../common/outage-log.js';
import { expiredSvidRefusal, REATTEST_PREFIX, rejectionOf, type Rejection } from './rejection.js';
import type { ServerClock } from './server-clock.js';
import { logAttestFailure, logSyncFailure } from './server-failure-log.js';
import { applySyncUpdate } from './sync-apply.js';
import { NEW_JOIN_TOKEN } from '../join-token-ways.js';

/**
 * Where the agent stands with the server:
 * - `attesting`: getting an agent SVID with the join token;
 * - `connecting`: the Sync stream is being opened;
 * - `synced`: the stream delivered its first update and is open;
 * - `disconnected`: waiting (backoff) to reconnect; cached SVIDs are served meanwhile;
 * - `reattest-required`: the agent SVID has expired or the server no longer accepts it, and no unused join token
 *   is configured;
 * - `banned`: an operator banned the agent;
 * - `stopped`: shut down.
 * In the last three the agent no longer talks to the server; it serves what it holds until it expires, except when
 * banned: then it withdraws everything it held.
 */
export type ConnectionState = 'attesting' | 'connecting' | 'synced' | 'disconnected' | 'reattest-required' | 'banned' | 'stopped';

export interface ServerConnectionOptions {
  client: NodeClient;
  identity: AgentIdentity;
  cache: IdentityCache;
  issuer: SvidIssuer;
  clock: Clock;
  log: Logger;
  /** Trust roots given at start (the --trust-bundle file), used until the server has sent a bundle. */
  bootstrapRoots: readonly Buffer[] | undefined;
  /** The revision restored from the data dir (0 = none). */
  revision: number;
  /** The first attestation failed for good: the agent cannot serve anything and should stop. */
  onFatal: (err: MeshidError) => void;
  /**
   * Asked when the first attestation with `bootstrapRoots` could not reach the server: whether the server answered
   * with a certificate those roots cannot authenticate (a wrong --trust-bundle), as an error to stop with; undefined
   * for an outage, which is retried.
   */
  checkBootstrapTrust?: (roots: readonly Buffer[]) => Promise<MeshidError | undefined>;
  /** The revision moved (to persist it). */
  onRevision?: (revision: number) => void;
  /**
   * An update took away something workloads were served (SyncApplied.withdraws; `entryIds` the entries concerned,
   * besides any bundle it replaced): persist that now, before any workload hears of it. Saves are otherwise
   * coalesced, and a crash in between would leave a data dir from which a restart (the server down) serves the
   * revoked grant again.
   */
  onWithdrawn?: (entryIds: readonly string[]) => void;
  /** Told when the server refuses the agent SVID as expired while this host's clock takes it for valid. */
  serverClock?: ServerClock;
  random?: () => number;
}

/**
 * What the server may answer Attest with and still attest the agent later, so it is retried with backoff: it is
 * unreachable (UNAVAILABLE: down, restarting, rate-limiting attempts), or reached but out of resources for now
 * (RESOURCE_EXHAUSTED: its datastore's disk is full). Every other answer stays as it is on a retry (the token is
 * unknown or used, the request or the answer is wrong) and ends the first attestation.
 */
const ATTEST_RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['unavailable', 'resource_exhausted']);

/** The refusal the agent makes itself when it finds its agent SVID expired (at its notAfter, or when reconnecting). */
const EXPIRED_HERE = `${REATTEST_PREFIX}the agent SVID has expired`;

/**
 * The agent's link to meshid-server: attests when it has no SVID, then holds the Sync push stream (agent.proto),
 * sending on every (re)connect the entry revisions it holds (`known`) so the server sends only what differs, and
 * reconnects with exponential backoff and jitter after any failure. When the agent SVID or the trust change, the
 * stream moves to the new channel at once. The server's two refusals are acted on: `must re-attest:` attests again
 * only with a configured join token this agent has not consumed yet (a consumed token would be refused anyway, and
 * retrying would hide the problem); otherwise, and on `banned:`, the agent stops talking to the server and says why.
 */
export class ServerConnection {
  private current: ClientReadableStream<SyncUpdateMessage> | undefined;
  private timer: TimerHandle | undefined;
  /** The attestation under way (attest), settled once it has returned: what stop() waits for. */
  private attestation: Promise<void> | undefined;
  /** Ends the wait of an attestation for its next try, at once (stop). */
  private endRetryWait: (() => void) | undefined;
  /**
   * Due at the agent SVID's notAfter. An SVID expiring while the agent waits to reconnect was otherwise noticed only
   * when the reconnect came due (up to 30 s on), the agent meanwhile calling itself disconnected and saying nothing.
   */
  private expiryTimer: TimerHandle | undefined;
  /** What the stream's messages up to its first `initial` brought: a large first push comes as several (sync-update-parts.ts). */
  private untilInitial = { received: 0, removed: 0 };
  private readonly backoff: Backoff;
  private stateValue: ConnectionState = 'connecting';
  private revisionValue: number;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private lastError: string | undefined;
  /** The Sync stream was open at least once since this agent started: a failure after it is a lost stream. */
  private syncedSinceStart = false;
  /** The Sync stream's failures, and the first attestation's: told once each, not per retry. */
  private readonly outage: OutageLog;

  constructor(private readonly o: ServerConnectionOptions) {
    this.backoff = new Backoff(undefined, o.random);
    this.revisionValue = o.revision;
    this.outage = new OutageLog(o.log, o.clock);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get revision(): number {
    return this.revisionValue;
  }

  /** Why the agent is not synced, when it is not. */
  get lastErrorMessage(): string | undefined {
    return this.lastError;
  }

  start(): void {
    this.unsubscribe = this.o.client.onCredentialsChange(() => this.credentialsChanged());
    this.watchExpiry();
    if (this.o.identity.current() === undefined) this.startAttesting(true);
    else this.openStream();
  }

  /**
   * Stops talking to the server. Settles once nothing of the connection's is pending: at once, or, with an attestation
   * under way, once it has returned: at once from its wait for the next try, else when the Attest call or trust probe
   * that is out ends (bounded by its deadline; the agent waits for an Attest's answer anyway: attestationInFlight).
   */
  stop(): Promise<void> {
    this.stopped = true;
    this.stateValue = 'stopped';
    this.timer?.cancel();
    this.timer = undefined;
    this.endRetryWait?.();
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    this.unsubscribe?.();
    this.cancelStream();
    return this.attestation ?? Promise.resolve();
  }

  /** A refusal seen on any call (Sync, Renew, SignX509Svids). */
  handleRejection(kind: Rejection, err: MeshidError): void {
    if (this.stopped || this.stateValue === 'banned' || this.stateValue === 'reattest-required' || this.stateValue === 'attesting') return;
    if (kind === 'reattest' && this.refusedForClocks(err)) return;
    this.cancelStream();
    this.timer?.cancel();
    this.timer = undefined;
    if (kind === 'banned') return this.giveUp('banned', err, `an operator banned this agent; it no longer talks to the server and removes its own SVID. Restart it with ${NEW_JOIN_TOKEN} to attest the host again (it attests as a new agent, under a new ID; evicting the old agent ID only removes its record)`);
    // Noticed here (the server may be down) or refused by the server: the line says which.
    const what = err.message === EXPIRED_HERE ? 'the agent SVID has expired' : 'the server no longer accepts the agent SVID';
    if (this.o.identity.canReattest()) {
      this.o.log.warn({ reason: err.message }, `${what}; attesting again with the configured join token`);
      this.startAttesting(false);
      return;
    }
    this.giveUp('reattest-required', err, `${what} and no unused join token is configured: restart the agent with ${NEW_JOIN_TOKEN}`);
  }

  /**
   * Whether `err` refuses the agent SVID as expired while this host's clock takes it for valid; if so, handled: the
   * clocks disagree (this one behind the server's), and neither giving the identity up nor spending a join token
   * helps: an SVID attested now would start in this host's future and be refused (issuedChainCheckTime). The agent
   * keeps its identity, says so (ServerClock: both clocks, the skew, what to do) and reconnects with its backoff: once
   * this clock is put right it finds the SVID expired itself (openStream) and re-attests or asks for a token; should
   * the server's clock have been the wrong one, it connects again. Refusals of several calls at once share one retry.
   */
  private refusedForClocks(err: MeshidError): boolean {
    const expired = expiredSvidRefusal(err);
    if (expired === undefined || expired.notAfter <= this.o.clock.now()) return false;
    this.o.serverClock?.refusedAsExpired(expired.notAfter, expired.serverTime);
    this.stateValue = 'disconnected';
    this.lastError = err.message;
    if (this.timer !== undefined) return true;
    this.cancelStream();
    this.timer = this.o.clock.setTimer(() => {
      this.timer = undefined;
      this.openStream();
    }, this.backoff.next());
    return true;
  }

  private giveUp(state: 'banned' | 'reattest-required', err: MeshidError, advice: string): void {
    this.stateValue = state;
    this.lastError = err.message;
    this.o.issuer.stop();
    if (state === 'banned') {
      this.o.identity.discard();
      // A ban is an operator revoking this node: nothing it holds is authorized any more. Its entries go (open
      // streams end PERMISSION_DENIED) and the data dir forgets them, so no restart serves them again.
      const ids = this.o.cache.entries().map((e) => e.id);
      this.o.cache.apply({ removed: ids });
      this.o.cache.markSynced();
      this.o.issuer.forget(ids);
      this.o.onWithdrawn?.(ids);
      this.o.log.error({ reason: err.message, withdrawnEntries: ids.length }, `${advice}. Its cached identities are withdrawn: workloads are no longer served`);
      return;
    }
    this.o.identity.stop();
    this.o.log.error({ reason: err.message, ...this.horizon() }, `${advice}. Cached SVIDs are served until they expire`);
  }

  private startAttesting(initial: boolean): void {
    const attestation = this.attest(initial).finally(() => {
      if (this.attestation === attestation) this.attestation = undefined;
    });
    this.attestation = attestation;
  }

  private async attest(initial: boolean): Promise<void> {
    this.stateValue = 'attesting';
    const agentBefore = this.o.identity.current()?.spiffeId;
    const backoff = new Backoff(undefined, this.o.random);
    for (;;) {
      if (this.stopped) return;
      try {
        const bundle = await this.o.identity.attest(this.o.cache.ownBundle()?.x509Authorities ?? this.o.bootstrapRoots);
        if (this.stopped) return;
        // Under a new agent ID the entries held are the old agent's until the new one's first Sync answer (synced()).
        if (agentBefore !== undefined && this.o.identity.current()?.spiffeId !== agentBefore) this.o.cache.markUnsynced();
        // A bundle that lost roots since the one held (re-attestation after a root was revoked) is a withdrawal too.
        const applied = this.o.cache.apply({ bundle });
        if (applied.withdraws) this.o.onWithdrawn?.(applied.withdrawnEntryIds);
        this.o.client.setTrust(bundle.trustDomain, bundle.x509Authorities);
        this.o.issuer.kick();
        this.o.issuer.resignUnanchored(bundle.x509Authorities);
        break;
      } catch (err) {
        // Stopped meanwhile: no retry, and no word of one (nor a refusal taken for a fatal one).
        if (this.stopped) return;
        const e = isMeshidError(err) ? err : fromServiceError(err);
        if (!ATTEST_RETRYABLE.has(e.code)) {
          this.lastError = e.message;
          if (initial) {
            this.stateValue = 'stopped';
            this.o.onFatal(e);
          } else {
            this.giveUp(
              'reattest-required',
              e,
              `attesting again with the configured join token failed (the reason says why): restart the agent with ${NEW_JOIN_TOKEN}`,
            );
          }
          return;
        }
        // A server that answered (RESOURCE_EXHAUSTED) was reached over TLS with these roots: nothing to probe.
        // A refusal with retry pushback came from the server over a channel that authenticated it: no trust to probe,
        // and each probe would cost the server another handshake and connection without an agent SVID in a storm.
        // So did a connection the server closed for one of its bounds (its GOAWAY came over that channel): a probe then
        // would add a handshake exactly when the server holds as many connections as it takes.
        const answered = retryPushbackWaitMs(e) !== undefined || NodeClient.closedByServerBound(e);
        if (initial && e.code === 'unavailable' && !answered && (await this.bootstrapTrustFails())) return;
        // Stopped while the trust probe ran: no retry, and no word of one.
        if (this.stopped) return;
        // A source address that spent its attempts is told when the next is due: an earlier try is refused again.
        const wait = Math.max(backoff.next(), retryPushbackWaitMs(e) ?? 0);
        this.lastError = e.message;
        logAttestFailure(this.outage, e, this.o.clock.now(), wait);
        await this.retryWait(wait);
      }
    }
    this.openStream();
  }

  /** An attestation's wait for its next try: `ms` on the clock, or until stop(). */
  private async retryWait(ms: number): Promise<void> {
    let timer: TimerHandle | undefined;
    await new Promise<void>((resolve) => {
      this.endRetryWait = resolve;
      timer = this.timer = this.o.clock.setTimer(resolve, ms);
    });
    this.endRetryWait = undefined;
    if (this.timer === timer) this.timer = undefined;
  }

  /**
   * Whether the first attestation must stop because the server cannot be authenticated with the operator's trust
   * bundle: retrying would only repeat that. Only while the roots in use are the bootstrap ones — an agent with roots
   * from its state (or from the server since) keeps retrying, as a server rotating its root can briefly present a
   * chain those roots do not know.
   */
  private async bootstrapTrustFails(): Promise<boolean> {
    const roots = this.o.bootstrapRoots;
    if (this.o.checkBootstrapTrust === undefined || roots === undefined || roots.length === 0 || this.o.cache.ownBundle() !== undefined) return false;
    const problem = await this.o.checkBootstrapTrust(roots);
    if (problem === undefined || this.stopped) return false;
    this.lastError = problem.message;
    this.stateValue = 'stopped';
    this.o.onFatal(problem);
    return true;
  }

  private openStream(): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = undefined;
    if (this.o.identity.expired(this.o.clock.now())) {
      this.handleExpiredSvid(() => this.openStream());
      return;
    }
    this.stateValue = this.stateValue === 'synced' ? 'synced' : 'connecting';
    // An entry held with its creation time in whole seconds (kept from before created_at_ms) is claimed at revision 0,
    // so the server sends it once more with the milliseconds that order a workload's identities.
    const known = this.o.cache.entries().map((e) => ({ id: e.id, revision: e.createdAtExact ? e.revision : 0 }));
    let stream: ClientReadableStream<SyncUpdateMessage>;
    try {
      stream = this.o.client.openSync({
        since_revision: this.revisionValue,
        known,
        bundle_sequence: this.o.cache.ownBundle()?.sequence ?? 0,
      });
    } catch (err) {
      this.streamFailed(isMeshidError(err) ? err : fromServiceError(err));
      return;
    }
    this.current = stream;
    this.untilInitial = { received: 0, removed: 0 };
    let done = false;
    const finish = (err: MeshidError): void => {
      if (done) return;
      done = true;
      if (this.current !== stream) return;
      this.current = undefined;
      this.streamFailed(err);
    };
    stream.on('data', (u: SyncUpdateMessage) => {
      if (this.current !== stream) return;
      this.onUpdate(u);
    });
    stream.on('error', (e) => finish(this.o.client.translate(e, 'Sync')));
    stream.on('end', () => finish(unavailable('the server ended the Sync stream')));
  }

  private onUpdate(u: SyncUpdateMessage): void {
    const td = this.o.identity.current()?.trustDomain ?? this.o.cache.ownBundle()?.trustDomain;
    if (td === undefined) return;
    const applied = applySyncUpdate(u, { cache: this.o.cache, issuer: this.o.issuer, log: this.o.log, trustDomain: td });
    if (applied.bundle !== undefined) this.o.client.setTrust(td, applied.bundle.x509Authorities);
    this.o.identity.renewIfTainted(applied.taintedKeyIds);
    if (typeof u.revision === 'number' && u.revision !== this.revisionValue) {
      this.revisionValue = u.revision;
      this.o.onRevision?.(u.revision);
    }
    // Streams are told of the change in a later turn (they are scheduled, not called): this save comes first.
    if (applied.withdraws) this.o.onWithdrawn?.(applied.withdrawnEntryIds);
    this.untilInitial.received += applied.upserts;
    this.untilInitial.removed += applied.removed;
    if (u.initial) {
      // The server took the agent SVID: whatever refused it as expired before is over.
      this.o.serverClock?.serverAccepted();
      const wasSynced = this.stateValue === 'synced';
      this.stateValue = 'synced';
      this.syncedSinceStart = true;
      this.lastError = undefined;
      this.backoff.reset();
      this.o.cache.markSynced();
      this.o.cache.markReady();
      this.o.issuer.reconcile();
      this.o.issuer.kick();
      const fields = { entries: this.o.cache.entryCount, ...this.untilInitial, revision: this.revisionValue, ...this.horizon(), ...this.outage.recovered() };
      if (wasSynced) this.o.log.debug(fields, 'Sync stream re-opened');
      else this.o.log.info(fields, 'in sync with meshid-server');
    } else if (applied.upserts > 0 || applied.removed > 0) {
      this.o.log.debug({ received: applied.upserts, removed: applied.removed, revision: this.revisionValue }, 'entries updated');
    }
  }

  private streamFailed(err: MeshidError): void {
    if (this.stopped) return;
    const kind = rejectionOf(err);
    if (kind !== undefined) {
      this.handleRejection(kind, err);
      return;
    }
    this.stateValue = 'disconnected';
    this.lastError = err.message;
    // A refusal of the Sync-open budget says when the server takes the next open: sooner is refused again.
    const wait = Math.max(this.backoff.next(), budgetRefusalWaitMs(err) ?? 0);
    logSyncFailure(this.outage, err, this.o.clock.now(), { reason: err.message, retryInMs: wait, ...this.horizon() }, this.syncedSinceStart);
    this.timer = this.o.clock.setTimer(() => {
      this.timer = undefined;
      this.openStream();
    }, wait);
  }

  /**
   * `renewed`: what to do should a renewal under way bring a valid SVID after all (AgentIdentity.renewalInFlight: a
   * Renew sent before notAfter); giving up or attesting again before its answer would drop that SVID.
   */
  private handleExpiredSvid(renewed: () => void = () => undefined): void {
    const renewal = this.o.identity.renewalInFlight();
    if (renewal !== undefined) {
      void renewal.then(() => {
        if (this.stopped) return;
        if (this.o.identity.expired(this.o.clock.now())) this.handleExpiredSvid(renewed);
        else renewed();
      });
      return;
    }
    this.handleRejection('reattest', new MeshidError('permission_denied', EXPIRED_HERE));
  }

  /** A renewed agent SVID or a new trust bundle: move the stream to the new channel now. */
  private credentialsChanged(): void {
    this.watchExpiry();
    if (this.current === undefined || this.stopped) return;
    this.cancelStream();
    this.openStream();
  }

  /**
   * Takes the expired-SVID path (as openStream does) at the notAfter of the agent SVID held now, unless the Sync stream
   * is open. A timer that fires early (a wall clock stepped back) waits again for the rest.
   */
  private watchExpiry(): void {
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    const notAfter = this.o.identity.notAfter();
    if (this.stopped || notAfter === undefined) return;
    this.expiryTimer = this.o.clock.setTimer(() => {
      this.expiryTimer = undefined;
      if (!this.o.identity.expired(this.o.clock.now())) this.watchExpiry();
      // The server judges the SVID by its own clock and ends the stream at its notAfter (node-sync.ts); the reconnect
      // then finds it expired (openStream). Acting on this host's clock alone, stepped forward, would give up (or spend
      // a join token on) an identity the server still takes, and the renewal it would sign.
      else if (this.stateValue !== 'synced') this.handleExpiredSvid();
    }, notAfter - this.o.clock.now());
  }

  private cancelStream(): void {
    const s = this.current;
    this.current = undefined;
    s?.cancel();
  }

  /** How long until the oldest SVID expires: in every log line about the server being unreachable. */
  private horizon(): Record<string, string | number> {
    const oldest = this.o.cache.oldestSvidExpiry();
    if (oldest === undefined) return {};
    const left = oldest - this.o.clock.now();
    return { oldestSvidExpiresInMs: left, oldestSvidExpiresIn: left > 0 ? formatDuration(left) : 'expired' };
  }
}
