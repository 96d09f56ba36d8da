import type { KeyObject } from 'node:crypto';
import type { Clock, TimerHandle } from '../../common/clock.js';
import { failedPrecondition, invalidArgument, isMeshidError, unavailable, type MeshidError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { heldLifetime, renewalTime } from '../../common/rotation.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { parseSpiffeId } from '../../common/spiffe/spiffe-id.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { chainNamesKeyId, verifyChain } from '../../common/x509/chain-verification.js';
import { createCsr } from '../../common/x509/csr.js';
import { generateKeyPair, keyMatchesCertificate } from '../../common/x509/keys.js';
import type { AgentStore } from '../storage/agent-store.js';
import type { StoredIdentity } from '../storage/stored-state.js';
import { backoffDelay, retryCapWithin, type BackoffPolicy } from './backoff.js';
import { budgetRefusalWaitMs } from './budget-refusal.js';
import { OutageLog } from '../../common/outage-log.js';
import { IdentitySaveRetry } from './identity-save-retry.js';
import { bundleFromMessage } from './messages.js';
import type { NodeClient } from './node-client.js';
import { expiredSvidRefusal, rejectionOf, type Rejection } from './rejection.js';
import { issuedChainCheckTime, type ServerClock } from './server-clock.js';
import { joinTokenFingerprint, joinTokenSha256 } from '../../common/join-token-fingerprint.js';
import { NEW_JOIN_TOKEN } from '../join-token-ways.js';

/** The refusal of an agent with nothing to attest or authenticate with. */
export function noJoinToken(dataDir: string): MeshidError {
  return failedPrecondition(`the agent has no SVID in ${dataDir} and no join token: start it with ${NEW_JOIN_TOKEN}`);
}

export interface AgentIdentityOptions {
  client: NodeClient;
  store: AgentStore;
  clock: Clock;
  log: Logger;
  /** The configured join token, if any. Never logged. */
  joinToken: string | undefined;
  /** Allow the first attestation without authenticating the server (no trust bundle). */
  insecureBootstrap: boolean;
  /** The trust domain, when known before attesting (configured or read from the trust bundle). */
  trustDomain: string | undefined;
  /** The own bundle's X.509 roots right now: renewed chains must verify against them. */
  trustRoots: () => readonly Buffer[];
  /** The server refused this agent's SVID (renewal): the connection decides what to do. */
  onRejected: (kind: Rejection, err: MeshidError) => void;
  /** Told of every agent SVID the server signs, to report a skew between the two clocks. */
  serverClock?: ServerClock;
  random?: () => number;
}

const RENEW_RETRY: BackoffPolicy = Object.freeze({ initialMs: 1000, maxMs: 60_000, multiplier: 2 });

/*
 * A failed renewal is retried within a quarter of the time the agent SVID has left, as SvidIssuer retries workload
 * SVIDs (backoff.ts retryCapWithin, which says why). For the agent SVID it matters more: a lapsed one takes a join
 * token (single use) to replace. An expired one keeps the plain backoff: nothing is left to protect. A budget refusal's
 * wait still holds, however little time is left.
 */

/**
 * The agent's own identity: node attestation with a join token (once; the SVID and key are then kept in the data
 * dir so a restart needs no token), and rotation of the agent SVID onto a new key through Renew at half the life it
 * is held for ± jitter (`renewalTime` of `heldLifetime`), persisted before it is used. Every new identity is handed
 * to the NodeClient, which moves new calls to a channel presenting it.
 *
 * A join token is spent by the server's answer, so attestation first proves that the data dir can hold the identity
 * (AgentStore.checkRoomForIdentity): a full or read-only data dir stops the agent with the token unspent. Should the
 * save still fail once the server has answered (the disk filled up meanwhile), the identity is not thrown away, which
 * would leave the server with an agent nothing holds a key for and the operator with a spent token: it is used from
 * memory and saved again with backoff, an error logged at every failure (a restart before it is saved needs a new
 * token). A renewal is different: the saved SVID still works, so a renewed one is used only once saved (unless the
 * one in use was never saved either).
 */
export class AgentIdentity {
  private identity: StoredIdentity | undefined;
  private trustDomain: string | undefined;
  private timer: TimerHandle | undefined;
  private renewFailures = 0;
  private jitter: number;
  private stopped = false;
  private renewing = false;
  /** Settled once the renewal under way has ended (renewalInFlight). */
  private renewal: Promise<void> | undefined;
  private taintedKeyIds: ReadonlySet<string> = new Set();
  /** Renewals in a row that came back chained to a tainted authority: their backoff. */
  private taintedRenewals = 0;
  /** Saves of the identity in use that the data dir refused (a full disk), retried until it takes one. */
  private readonly saves: IdentitySaveRetry;
  /** The attestation whose Attest call is out: its answer spends the join token (attestationInFlight). */
  private attesting: Promise<unknown> | undefined;
  /** An insecure bootstrap is warned of once: the attempts that follow while the server is out of reach are retries. */
  private insecureWarned = false;
  /**
   * The identity an attestation replaces (attest): not renewed any more. Its SVID has expired or the server refused
   * it, so each Renew only has the server refuse it again, about once a minute while the server is down, for as long
   * as the new attestation takes.
   */
  private givenUp: StoredIdentity | undefined;
  private readonly random: () => number;
  /** Renewals failing while the server is down, refusing or out of budget: told once, not per retry. */
  private readonly renewFailuresLog: OutageLog;

  constructor(private readonly o: AgentIdentityOptions) {
    this.trustDomain = o.trustDomain;
    this.random = o.random ?? Math.random;
    this.renewFailuresLog = new OutageLog(o.log, o.clock);
    this.saves = new IdentitySaveRetry(o, this.random, () => this.stopped);
    this.jitter = this.newJitter();
  }

  current(): StoredIdentity | undefined {
    return this.identity;
  }

  /** Uses an identity restored from the data dir and schedules its renewal. */
  restore(identity: StoredIdentity): void {
    this.trustDomain = identity.trustDomain;
    this.use(identity);
  }

  /** Whether the agent SVID has expired: the server would refuse it at the TLS layer, only attestation helps. */
  expired(now: number): boolean {
    const leaf = this.identity?.chain[0];
    return leaf === undefined || parseCertificate(leaf).notAfter <= now;
  }

  /** NotAfter of the agent SVID (epoch ms), if there is one. */
  notAfter(): number | undefined {
    const leaf = this.identity?.chain[0];
    return leaf === undefined ? undefined : parseCertificate(leaf).notAfter;
  }

  /**
   * Whether a join token is configured that this data dir has not consumed: the only way back after the server said
   * "must re-attest" (evicted, or the SVID is no longer current). A token that was used once is never offered again.
   */
  canReattest(): boolean {
    const token = this.o.joinToken;
    return token !== undefined && token !== '' && joinTokenSha256(token) !== this.identity?.joinTokenSha256;
  }

  /**
   * Node attestation with the configured join token. Returns the server's bundle (for an insecure bootstrap: the
   * trust learnt on first use). Throws MeshidError: unavailable or resource_exhausted (retry later), or anything else
   * (the data dir cannot hold the identity, the token was refused, the answer is unusable). Once the server has
   * answered, a data dir that refuses the identity does not make it throw (see the class comment).
   */
  async attest(trustRoots: readonly Buffer[] | undefined): Promise<TrustBundle> {
    this.giveUpCurrent();
    const attesting = this.attestOnce(trustRoots);
    this.attesting = attesting;
    try {
      return await attesting;
    } finally {
      if (this.attesting === attesting) this.attesting = undefined;
    }
  }

  /**
   * Undefined, or a promise settled once the attestation under way has ended. A stop waits for it before the data dir
   * is let go: the server's answer spends the join token, so the identity it brings must be saved where the next
   * start finds it, while the data dir is still this agent's (not after its lock is released, nor never).
   */
  attestationInFlight(): Promise<void> | undefined {
    return this.attesting?.then(
      () => undefined,
      () => undefined,
    );
  }

  private async attestOnce(trustRoots: readonly Buffer[] | undefined): Promise<TrustBundle> {
    const token = this.o.joinToken;
    if (token === undefined || token === '') {
      throw noJoinToken('its data dir');
    }
    const insecure = trustRoots === undefined || trustRoots.length === 0;
    if (insecure && !this.o.insecureBootstrap) {
      throw failedPrecondition('no trust bundle to authenticate meshid-server with: pass --trust-bundle FILE (meshid-server bundle show) or --insecure-bootstrap');
    }
    try {
      this.o.store.checkRoomForIdentity();
    } catch (err) {
      if (!isMeshidError(err)) throw err;
      throw failedPrecondition(
        `${err.message}. The join token was not used: make room there (or make it writable), or use another --data-dir, and start the agent again`,
        err,
      );
    }
    if (insecure) {
      const level = this.insecureWarned ? 'debug' : 'warn';
      this.insecureWarned = true;
      this.o.log[level]('insecure bootstrap: attesting WITHOUT authenticating the server; the bundle it returns is trusted on first use');
    }
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const csr = await createCsr(privateKey, publicKey);
    // Stopped meanwhile: the token is not spent on an agent that will not use it.
    if (this.stopped) throw unavailable('the agent is stopping; the join token was not used');
    const sentAt = this.o.clock.now();
    const res = await this.o.client.attest(token, csr, { insecure });
    const spiffeId = parseSpiffeId(res.spiffe_id ?? '');
    if (this.trustDomain !== undefined && spiffeId.trustDomain !== this.trustDomain) {
      throw failedPrecondition(`the server attested this agent as ${spiffeId.id}, outside the trust domain ${this.trustDomain}`);
    }
    if (res.bundle === undefined) throw invalidArgument('the server sent no bundle with the attestation');
    const bundle = bundleFromMessage(res.bundle);
    if (bundle.trustDomain !== spiffeId.trustDomain) throw invalidArgument(`the server sent the bundle of ${bundle.trustDomain} for ${spiffeId.id}`);
    const chain = (res.svid_chain ?? []).map((c) => Buffer.from(c));
    this.checkChain(chain, spiffeId.id, privateKey, bundle.x509Authorities, sentAt);
    const identity: StoredIdentity = {
      trustDomain: spiffeId.trustDomain,
      spiffeId: spiffeId.id,
      datacenter: res.datacenter ?? '',
      chain,
      privateKey,
      joinTokenSha256: joinTokenSha256(token),
      trustRoots: bundle.x509Authorities,
    };
    this.trustDomain = identity.trustDomain;
    this.o.log.info({ agent: identity.spiffeId, datacenter: identity.datacenter, tokenFingerprint: joinTokenFingerprint(token) }, 'attested to meshid-server with a join token');
    if (this.stopped) {
      // Answered while the agent stops (which waits for this): the token is spent all the same, so the identity is
      // saved for the next start, but not put to use.
      this.saves.unsaved = identity;
      this.saves.saveLast();
      return bundle;
    }
    // The token is spent and the server knows this agent by this key: kept whether or not the data dir takes it.
    this.saves.persist(identity);
    this.use(identity, sentAt);
    return bundle;
  }

  /**
   * Renews now if the agent SVID chains through a tainted authority (SyncUpdate.tainted_authority_ids). The set is
   * kept: a renewal under way when it arrives may bring an SVID signed just before the taint, renewed again then.
   */
  renewIfTainted(keyIds: ReadonlySet<string>): void {
    this.taintedKeyIds = keyIds;
    if (this.identity === undefined || !chainNamesKeyId(this.identity.chain, keyIds)) return;
    // Every Sync update naming the taint comes here until the renewal is done: the one under way checks its answer for
    // the taint (renew), so a later update is no news to warn of.
    if (this.renewing) {
      this.o.log.debug('the agent SVID chains to a tainted authority; its renewal is under way');
      return;
    }
    this.o.log.warn('the agent SVID chains to a tainted authority; renewing it now');
    void this.renew();
  }

  /**
   * Stops renewing (banned, must re-attest without a token, shutdown). An identity the data dir refused so far gets
   * one last try; failing that, the error says that the next start needs a new join token.
   */
  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.saves.stop();
  }

  /**
   * Stops for good and removes the identity from the data dir (a ban): as SPIRE's agent removes its SVID when banned.
   * Nothing can use it again (the server refuses it, and lifting the ban takes a new join token), and the key should
   * not stay on disk or in a copy of the data dir. One the data dir never took is dropped, not saved.
   */
  discard(): void {
    this.saves.unsaved = undefined;
    this.stop();
    try {
      this.o.store.removeIdentity();
      this.o.log.info('the agent SVID and its key are removed from the data dir');
    } catch (err) {
      this.o.log.error(`${(err as Error).message}: remove it by hand; the server refuses it`);
    }
  }

  /** Stops renewing the identity held (if any) until one replaces it: see `givenUp`. */
  private giveUpCurrent(): void {
    if (this.identity === undefined) return;
    this.givenUp = this.identity;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Renews the agent SVID now (its timer calls this; so can tests). */
  async renew(): Promise<void> {
    const current = this.identity;
    if (current === undefined || current === this.givenUp || this.stopped || this.renewing) return;
    this.timer?.cancel();
    this.timer = undefined;
    this.renewing = true;
    let settle!: () => void;
    this.renewal = new Promise<void>((resolve) => (settle = resolve));
    try {
      const { privateKey, publicKey } = generateKeyPair('ec-p256');
      const csr = await createCsr(privateKey, publicKey);
      const sentAt = this.o.clock.now();
      const chain = await this.o.client.renew(csr);
      // Stopped while the server answered (shutdown, a ban): the data dir may already be another process's, and the
      // SVID in use stays valid with the server as the previous one. Attested again meanwhile (evicted, with an unused
      // token), or attesting: the answer renews an identity this agent no longer is, and must not replace the new one.
      if (this.stopped || this.identity !== current || current === this.givenUp) return;
      const roots = this.o.trustRoots();
      this.checkChain(chain, current.spiffeId, privateKey, roots, sentAt);
      // The roots it was checked with are kept with it: the way back to the server should the state be lost.
      const next: StoredIdentity = { ...current, chain, privateKey, trustRoots: roots };
      // Persisted before use: a crash now restarts with the new SVID (or, before the rename, the old one, which the
      // server still accepts as the previous SVID). A save that fails leaves the old one in use, and is retried with
      // the renewal. Unless the data dir never took the one in use: there is nothing to fall back to, so the newest
      // is used and saved when the data dir takes it.
      if (this.saves.unsaved === undefined) this.o.store.saveIdentity(next);
      else this.saves.persist(next);
      this.renewFailures = 0;
      this.jitter = this.newJitter();
      const leaf = parseCertificate(chain[0]!);
      const renewAt = this.use(next, sentAt);
      this.o.log.info(
        {
          agent: next.spiffeId,
          serial: leaf.serialHex,
          notAfter: new Date(leaf.notAfter).toISOString(),
          renewAt: new Date(renewAt).toISOString(),
          ...this.renewFailuresLog.recovered(),
        },
        'agent SVID renewed',
      );
      if (chainNamesKeyId(chain, this.taintedKeyIds)) {
        // Signed before the taint reached the server: renewed again soon, backing off should that keep happening, yet
        // never after its own renewal time, which this replaces: grown to a minute, the backoff outlives a short SVID.
        const wait = Math.min(backoffDelay(this.taintedRenewals++, RENEW_RETRY, this.random), Math.max(0, renewAt - this.o.clock.now()));
        this.o.log.warn({ retryInMs: wait }, 'the renewed agent SVID chains to a tainted authority; renewing it again');
        this.renewAfter(wait);
      } else {
        this.taintedRenewals = 0;
      }
    } catch (err) {
      // Attested again meanwhile: the failure is the old identity's, and a retry scheduled for it would replace the
      // new identity's renewal time with a renewal of an SVID just signed. Given up for an attestation still under
      // way: nothing to retry either.
      if (this.identity !== current || current === this.givenUp) return;
      const kind = rejectionOf(err);
      if (kind !== undefined) {
        this.o.onRejected(kind, err as MeshidError);
        // Refused as expired while this host's clock takes the SVID for valid: the clocks disagree, and the connection
        // keeps the identity and retries (ServerConnection). So do renewals: they work again should it be the
        // server's clock that is put right.
        const expired = expiredSvidRefusal(err);
        if (expired !== undefined && expired.notAfter > this.o.clock.now() && !this.stopped) {
          this.renewAfter(backoffDelay(this.renewFailures++, RENEW_RETRY, this.random));
        }
        return;
      }
      // A budget refusal (signing or renewals) says when the server will take the next one: no sooner than that.
      const budgetWait = budgetRefusalWaitMs(err);
      const wait = Math.max(backoffDelay(this.renewFailures++, RENEW_RETRY, this.random, this.retryCapMs()), budgetWait ?? 0);
      // Retried about every minute while the server is down (more often near expiry): one warning, then debug lines (as
      // the Sync stream's and the workload SVIDs' retries), and an outage or a budget is no fault of the agent's: its
      // reason, no stack trace.
      const unreachable = isMeshidError(err, 'unavailable');
      const expected = unreachable || budgetWait !== undefined;
      this.renewFailuresLog.failed(
        unreachable ? 'unreachable' : budgetWait !== undefined ? 'budget' : 'error',
        'warn',
        { ...(expected ? { reason: (err as Error).message } : { err }), retryInMs: wait },
        'cannot renew the agent SVID; will retry',
      );
      if (!this.stopped) this.renewAfter(wait);
    } finally {
      this.renewing = false;
      this.renewal = undefined;
      settle();
    }
  }

  /**
   * Undefined, or a promise settled once the renewal under way has ended (its Renew bounded by the client's deadline).
   * The expiry of the agent SVID waits for it: a Renew sent before notAfter may still bring a renewed SVID, which an
   * agent that gave up its identity meanwhile (or attested again) would drop.
   */
  renewalInFlight(): Promise<void> | undefined {
    return this.renewal;
  }

  /** The longest wait before retrying a failed renewal (retryCapWithin); Infinity once the agent SVID has expired. */
  private retryCapMs(): number {
    return retryCapWithin(this.notAfter(), this.o.clock.now(), RENEW_RETRY);
  }

  private renewAfter(ms: number): void {
    this.timer?.cancel();
    this.timer = this.o.clock.setTimer(() => void this.renew(), ms);
  }

  /**
   * Returns when the identity is renewed. `askedAt`: when the Attest or Renew that brought it went out (heldLifetime: a
   * backdated notBefore would put the renewal of an agent_svid_ttl of 10 s or less before its arrival); none for one
   * restored from the data dir.
   */
  private use(identity: StoredIdentity, askedAt?: number): number {
    this.identity = identity;
    this.givenUp = undefined;
    this.stopped = false;
    this.o.client.setIdentity({ chain: identity.chain, privateKey: identity.privateKey });
    return this.scheduleRenewal(askedAt);
  }

  private scheduleRenewal(askedAt: number | undefined): number {
    this.timer?.cancel();
    const leaf = parseCertificate(this.identity!.chain[0]!);
    const lifetime = { notBefore: leaf.notBefore, notAfter: leaf.notAfter };
    const at = renewalTime(askedAt === undefined ? lifetime : heldLifetime(lifetime, askedAt), this.jitter);
    this.timer = this.o.clock.setTimer(() => void this.renew(), Math.max(0, at - this.o.clock.now()));
    return at;
  }

  /** A chain the server signed for a request sent at `sentAt`: see issuedChainCheckTime for the time it is checked at. */
  private checkChain(chain: readonly Buffer[], spiffeId: string, privateKey: KeyObject, roots: readonly Buffer[], sentAt: number): void {
    if (chain.length === 0) throw invalidArgument('the server returned no agent SVID');
    const leaf = parseCertificate(chain[0]!);
    if (leaf.uriSans.length !== 1 || leaf.uriSans[0] !== spiffeId) throw invalidArgument(`the agent SVID names ${leaf.uriSans.join(', ')}, expected ${spiffeId}`);
    if (!keyMatchesCertificate(privateKey, leaf.der)) throw invalidArgument('the agent SVID does not certify the key sent');
    this.o.serverClock?.observe(leaf.notBefore, sentAt, leaf.notAfter);
    const at = issuedChainCheckTime(leaf.notBefore, this.o.clock.now(), 'the agent SVID');
    try {
      verifyChain(chain, roots, at, { requireEndEntity: true });
    } catch (err) {
      throw isMeshidError(err) ? invalidArgument(`the agent SVID does not verify against the trust bundle: ${err.message}`, err) : err;
    }
  }

  private newJitter(): number {
    return (this.random() * 2 - 1) * 0.1;
  }
}
