import type { Clock, TimerHandle } from '../../common/clock.js';
import { isMeshidError, unavailable } from '../../common/errors.js';
import { parseJwtSvid } from '../../common/jwt/jwt-svid.js';
import { silentLogger, type Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { BUDGET_REFUSALS_WAITED_FOR_MS, budgetRefusalWaitMs } from '../client/budget-refusal.js';
import { JwtSigningHold } from './jwt-signing-hold.js';
import { SigningBudgetWait } from './signing-budget-wait.js';

/** A JWT-SVID the server signed; times are epoch milliseconds. */
export interface SignedJwtSvid {
  readonly token: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** How the cache obtains a new token: SignJwtSvid on the server. */
export type JwtSigner = (entryId: string, audience: readonly string[]) => Promise<SignedJwtSvid>;

interface Slot {
  readonly entryId: string;
  readonly jwt: SignedJwtSvid;
  /**
   * Re-mint from this instant (half the token's lifetime after it arrived) and never hand it out from `usableUntil`
   * (its lifetime after it arrived). Measured on the agent's clock from the moment the token arrived, so a clock
   * difference between agent and server cannot make every token look stale (or fresh forever).
   */
  readonly refreshAt: number;
  readonly usableUntil: number;
  /** Characters it holds (its key and token), counted against JWT_CACHE_CHARS_PER_TOKEN × the cache's size. */
  readonly chars: number;
}

interface CallMark {
  readonly entryId: string;
  discarded: boolean;
  /**
   * Callers that still want this call's token: a caller whose call ended (cancelled, past its deadline) leaves. None
   * left when its turn to go comes (JwtSigningHold), the call is not made: a token for nobody costs the budget.
   */
  wanted: number;
  /** Whether the call has gone to the server; before, it waits for its turn behind another signing. */
  sent: boolean;
}

interface InflightCall extends CallMark {
  readonly promise: Promise<SignedJwtSvid>;
}

/**
 * How long a caller waits for the refresh of a token it could be handed still valid: a server that hangs (not one
 * that refuses, which fails fast) would otherwise hold every caller for its call's whole deadline. SPIRE waits 1 s too.
 * The refresh goes on and stores its token when it comes.
 */
export const REFRESH_WAIT_WITH_VALID_TOKEN_MS = 1000;

/** Default bound on cached tokens: (entry, audience list) pairs, least recently used evicted first. */
export const DEFAULT_JWT_CACHE_SIZE = 1000;

/**
 * Characters a cached token may hold on average, key included: the cache holds at most this times its size in all.
 * A token's audiences are in it twice (its key, its claims in base64), and a workload may ask for 64 audiences of
 * 1 KB: ~155 KB a token, so 1,000 such tokens, one local workload's choice, grew the agent by ~330 MB (measured).
 * Real tokens (a SPIFFE ID, an audience or two, a signature) are under 1 KB, 3 KB with the longest SPIFFE ID.
 */
export const JWT_CACHE_CHARS_PER_TOKEN = 8 * 1024;

/**
 * JWT-SVIDs per (entry, audience list), re-minted once half their lifetime has passed as SPIRE does (SPEC-NOTES §8),
 * so every token handed out is valid at return time with room to spare. Bounded in size (LRU); concurrent requests
 * for the same key share one signing call. When signing fails, a cached token that has not expired is still
 * returned: a workload keeps working through a short server outage or fault, unless the server refused it the entry
 * (refusesEntitlement), which drops the token. Without one, a refusal of the server's signing
 * budget is waited out as a first X.509 message waits for its SVIDs (BUDGET_REFUSALS_WAITED_FOR_MS), so a one-shot
 * FetchJWTSVID in a reconnect storm gets its token rather than an error; that wait is one for all signing
 * (JwtSigningHold), not one per caller.
 *
 * The audiences are signed exactly as the workload listed them, order and duplicates kept, as SPIRE's server signs
 * them: a relying party may read `aud[0]`, and go-spiffe's API names the first audience the primary one. So the key
 * is the ordered list, not the set: `["b","a"]` and `["a","b"]` are two tokens. (SPIRE's agent keys its cache by the
 * sorted list and so can hand a `["a","b"]` caller the token it minted for `["b","a"]`; meshid does not.)
 */
export class JwtSvidCache {
  private readonly slots = new Map<string, Slot>();
  /** The characters the slots hold in all (Slot.chars). */
  private slotChars = 0;
  /** The most characters the slots may hold: JWT_CACHE_CHARS_PER_TOKEN × maxSize. */
  private readonly maxChars: number;
  /**
   * Signing calls under way by key. A call whose entry changed or went meanwhile is `discarded`: its result goes to
   * those who asked before the change, is not stored, and no later request joins it.
   */
  private readonly inflight = new Map<string, InflightCall>();
  private readonly hold: JwtSigningHold;
  /** The fallback's warnings, one per entry a minute: during an outage every workload asks again and again. */
  private readonly fallbackLines: LogThrottle;

  constructor(
    private readonly sign: JwtSigner,
    private readonly clock: Clock,
    readonly maxSize = DEFAULT_JWT_CACHE_SIZE,
    /** Jitter of the retries after a budget refusal, [0, 1). */
    random: () => number = Math.random,
    /** The wait after a budget refusal, shared with X.509 signing (IdentityCache.signingBudget). */
    budget: SigningBudgetWait = new SigningBudgetWait(clock),
    private readonly log: Logger = silentLogger(),
  ) {
    if (!Number.isSafeInteger(maxSize) || maxSize < 1) throw new Error(`JWT-SVID cache size must be a positive integer, got ${maxSize}`);
    this.maxChars = maxSize * JWT_CACHE_CHARS_PER_TOKEN;
    this.hold = new JwtSigningHold(clock, random, budget);
    // One key per entry with a cached token, at most maxSize of them: a smaller bound would forget them in a cycle.
    this.fallbackLines = new LogThrottle(clock, 60_000, { maxKeys: maxSize });
  }

  get size(): number {
    return this.slots.size;
  }

  /** The characters the cached tokens and their keys hold in all; at most JWT_CACHE_CHARS_PER_TOKEN × maxSize. */
  get chars(): number {
    return this.slotChars;
  }

  private removeSlot(key: string): void {
    const slot = this.slots.get(key);
    if (slot === undefined) return;
    this.slots.delete(key);
    this.slotChars -= slot.chars;
  }

  /**
   * A token for this entry whose `aud` is exactly `audience`, in that order: cached while fresh, else newly signed.
   * A budget refusal with no usable token cached is retried when all signing resumes (JwtSigningHold: the server's
   * retry time plus up to a second of jitter) while that falls within BUDGET_REFUSALS_WAITED_FOR_MS of the first
   * refusal and before `deadline` (the caller's, on this cache's clock); otherwise the refusal is thrown. `signal`
   * is the caller's: once it aborts (the call was cancelled) the wait ends and nothing more is signed for it.
   */
  async fetch(entryId: string, audience: readonly string[], deadline = Infinity, signal?: AbortSignal): Promise<SignedJwtSvid> {
    let refusedAt: number | undefined;
    for (;;) {
      if (signal?.aborted === true) throw callGone();
      try {
        return await this.fetchOnce(entryId, audience, deadline, signal);
      } catch (err) {
        if (budgetRefusalWaitMs(err) === undefined) throw err;
        const now = this.now();
        refusedAt ??= now;
        const retryAt = this.hold.heldUntil() ?? now;
        if (retryAt - refusedAt > BUDGET_REFUSALS_WAITED_FOR_MS || retryAt >= deadline) throw err;
        await this.sleep(retryAt - now, signal);
      }
    }
  }

  /** Resolves after `ms` on the clock, or rejects as soon as `signal` aborts. */
  private sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        timer.cancel();
        reject(callGone());
      };
      const timer = this.clock.setTimer(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private now(): number {
    return this.clock.now();
  }

  /**
   * `pending`, unless the caller's call ends first: cancelled (`signal`) or past its `deadline` on the clock. After a
   * budget refusal signings go one at a time, and one the server is slow to answer (cut only by the transport's 30 s
   * deadline) would otherwise keep every caller queued behind it long after their own calls ended. `onGiveUp` runs
   * when the caller stops waiting.
   */
  private untilCallEnds<T>(
    pending: Promise<T>,
    deadline: number,
    signal: AbortSignal | undefined,
    onGiveUp: () => void,
    timedOut: () => Error = deadlinePassed,
  ): Promise<T> {
    if (signal === undefined && deadline === Infinity) return pending;
    return new Promise<T>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const settle = (): void => {
        timer?.cancel();
        signal?.removeEventListener('abort', onAbort);
      };
      const giveUp = (err: Error): void => {
        settle();
        onGiveUp();
        reject(err);
      };
      const onAbort = (): void => giveUp(callGone());
      if (signal?.aborted === true) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadline !== Infinity) timer = this.clock.setTimer(() => giveUp(timedOut()), Math.max(0, deadline - this.now()));
      pending.then(
        (value) => {
          settle();
          resolve(value);
        },
        (err: unknown) => {
          settle();
          reject(err);
        },
      );
    });
  }

  private async fetchOnce(entryId: string, audience: readonly string[], deadline = Infinity, signal?: AbortSignal): Promise<SignedJwtSvid> {
    const key = JSON.stringify([entryId, audience]);
    const slot = this.slots.get(key);
    if (slot !== undefined && this.now() < slot.refreshAt) {
      // Map order is recency order: re-insert on use.
      this.slots.delete(key);
      this.slots.set(key, slot);
      return slot.jwt;
    }
    let call = this.inflight.get(key);
    if (call === undefined || call.discarded) {
      const mark: CallMark = { entryId, discarded: false, wanted: 1, sent: false };
      const started: InflightCall = Object.assign(mark, { promise: this.signAndStore(key, mark, [...audience]) });
      this.inflight.set(key, started);
      const clear = (): void => {
        if (this.inflight.get(key) === started) this.inflight.delete(key);
      };
      started.promise.then(clear, clear);
      call = started;
    } else call.wanted++;
    const joined = call;
    // A refresh that waits for its turn behind another signing (one at a time after a budget refusal) is not waited
    // for while the token held is valid, as a refusal is not: it goes on and refreshes the cache when its turn comes.
    if (slot !== undefined && !joined.sent && this.now() < slot.usableUntil) return slot.jwt;
    const shortWait = slot !== undefined && this.now() < slot.usableUntil && this.now() + REFRESH_WAIT_WITH_VALID_TOKEN_MS < deadline;
    const shortWaitOver = unavailable('the refresh of a cached JWT-SVID takes longer than the wait for it');
    try {
      if (!shortWait) return await this.untilCallEnds(joined.promise, deadline, signal, () => joined.wanted--);
      return await this.untilCallEnds(joined.promise, this.now() + REFRESH_WAIT_WITH_VALID_TOKEN_MS, signal, () => joined.wanted--, () => shortWaitOver);
    } catch (err) {
      const stale = this.slots.get(key);
      if (refusesEntitlement(err)) {
        // The server says the workload may no longer have this identity: the token it holds was signed under what the
        // server has just withdrawn, so no later path (the short wait, a refresh queued behind the budget) hands it out.
        if (stale !== undefined) this.removeSlot(key);
        throw err;
      }
      // Any other failure (the server unreachable, its signing budget spent, a fault of its own) says nothing about
      // the workload's right to the identity: the token held is still valid, and better than no token.
      if (stale !== undefined && this.now() < stale.usableUntil) {
        if (signal?.aborted !== true) this.warnFallback(stale, err);
        return stale.jwt;
      }
      // The token held expired during the short wait: nothing to fall back on, and the caller's own deadline has not
      // come, so it waits for the refresh as a caller without a cached token does (not failed as past its deadline).
      if (err !== shortWaitOver) throw err;
      joined.wanted++;
      return await this.untilCallEnds(joined.promise, deadline, signal, () => joined.wanted--);
    }
  }

  /**
   * Says that a cached token was handed out because its refresh failed, as SPIRE's agent does ("returning cached
   * copy"): the workload is served, so without this line an outage shows only when the tokens expire. Keyed by entry,
   * which the server names: audiences are the caller's choice and would defeat the throttle. Never the token itself.
   */
  private warnFallback(slot: Slot, err: unknown): void {
    const admitted = this.fallbackLines.admit(slot.entryId);
    if (admitted === undefined) return;
    const spiffeId = tokenSubject(slot.jwt.token);
    this.log.warn(
      {
        entryId: slot.entryId,
        ...(spiffeId !== undefined && { spiffeId }),
        reason: err instanceof Error ? err.message : String(err),
        ...(isMeshidError(err) && { code: err.code }),
        cachedUsableUntil: new Date(slot.usableUntil).toISOString(),
        ...admitted,
      },
      `the refresh of a JWT-SVID failed: returning the cached copy, valid on this agent's clock until cachedUsableUntil`,
    );
  }

  /** Forgets the cached tokens `unusable` picks, so neither a request nor the outage fallback hands them out. */
  dropTokens(unusable: (jwt: SignedJwtSvid) => boolean): void {
    for (const [key, slot] of this.slots) if (unusable(slot.jwt)) this.removeSlot(key);
  }

  /** Forgets every token of an entry (removed, or changed so that its tokens would be wrong). */
  dropEntry(entryId: string): void {
    for (const call of this.inflight.values()) if (call.entryId === entryId) call.discarded = true;
    for (const [key, slot] of this.slots) if (slot.entryId === entryId) this.removeSlot(key);
  }

  private async signAndStore(key: string, call: CallMark, audience: readonly string[]): Promise<SignedJwtSvid> {
    const { entryId } = call;
    let jwt: SignedJwtSvid;
    try {
      jwt = await this.hold.run(() => {
        if (call.wanted === 0) return Promise.reject(callGone());
        call.sent = true;
        return this.sign(entryId, audience);
      });
    } catch (err) {
      // Dropped here, not only by the callers waiting for this call: a refusal that comes after every caller stopped
      // waiting (the short wait over, or a refresh queued behind the budget) must not leave the token to the next
      // failure's fallback. A discarded call's slot is no longer its own.
      if (refusesEntitlement(err) && !call.discarded) this.removeSlot(key);
      throw err;
    }
    if (!call.discarded) {
      this.removeSlot(key);
      const receivedAt = this.now();
      const lifetime = Math.max(0, jwt.expiresAt - jwt.issuedAt);
      const chars = key.length + jwt.token.length;
      // A token larger than the whole bound (a tiny jwt_svid_cache_size) is handed out but not kept: keeping it would
      // evict every other.
      if (chars <= this.maxChars) {
        this.slots.set(key, { entryId, jwt, refreshAt: receivedAt + lifetime / 2, usableUntil: receivedAt + lifetime, chars });
        this.slotChars += chars;
        while (this.slots.size > this.maxSize || this.slotChars > this.maxChars) this.removeSlot(this.slots.keys().next().value!);
      }
    }
    return jwt;
  }
}

/**
 * Whether a failed signing says that the workload is no longer entitled to the identity: the server refuses the entry
 * to this agent (PERMISSION_DENIED, as for a banned agent) or no longer has it (NOT_FOUND). SPIRE's agent serves its
 * cached token through any failure; these two are the server's word that the token should not be handed out again.
 * The agent's own rejections that the workload is not concerned by ('must re-attest') reach the cache as UNAVAILABLE
 * (agent.ts).
 */
function refusesEntitlement(err: unknown): boolean {
  return isMeshidError(err, 'permission_denied') || isMeshidError(err, 'not_found');
}

/** The token's `sub`, for the log; undefined when it cannot be read. */
function tokenSubject(token: string): string | undefined {
  try {
    const sub = parseJwtSvid(token).claims['sub'];
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

/** What a wait for the budget ends with when its caller is gone: nobody reads it, the log does. */
const callGone = (): Error => unavailable('the caller cancelled its call while it waited for the server\'s signing budget');

/** What a wait for a token ends with when its caller's deadline has passed: the caller has stopped listening. */
const deadlinePassed = (): Error =>
  unavailable('the call\'s deadline passed while its JWT-SVID waited to be signed (the server\'s signing budget, or a slow server)');
