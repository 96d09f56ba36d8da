import { createHash } from 'node:crypto';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { formatSelector, type Selector } from '../../common/spiffe/selector.js';
import { cutText } from '../../common/cut-text.js';

/**
 * The log of names SDS streams wait for. A stream that names a secret nothing of its caller's resolves (an unknown
 * alias, a SPIFFE ID no entry of the caller has, a trust domain it does not federate with) gets no answer for it, by
 * design (xds_protocol: the server remembers the name and answers when it exists), and Envoy then waits silently
 * for its initial_fetch_timeout or forever. Without this log, the operator asking "why does this Envoy get no
 * certificate?" finds nothing at the default level. A name missing only because its SVID is being signed right now
 * is not logged: it arrives in a moment (signing-wait.ts), and every Envoy starting beside a new entry would warn.
 *
 * Names are chosen by the caller, so lines are throttled per caller uid twice: a stream repeating the same names
 * (reconnecting in a loop, or a thousand sidecars of one uid) costs one line per name set a minute, and a caller
 * inventing new names at most MAX_SETS_PER_UID lines a minute.
 */

/** The throttle's window: a line per name set and uid per minute, as the refusal log's. */
const WINDOW_MS = 60_000;
/** Distinct name sets one uid may have logged per window and kind; the rest are counted into the uid's next line. */
const MAX_SETS_PER_UID = 5;
/** Uids (per kind) tracked for MAX_SETS_PER_UID before the oldest are forgotten. */
const MAX_UIDS = 256;
/** How many names a line lists, and how much of each: enough to recognise, bounded against a hostile client. */
const MAX_LISTED_NAMES = 10;
const MAX_LISTED_NAME_LENGTH = 256;

/** No names: what a stream whose names all resolve reports, one frozen array for all of them. */
export const NO_NAMES: readonly string[] = Object.freeze([]);

/** Who a stream's caller is, for the lines: its uid keys the throttle; the logger already names pid, uid and gid. */
export interface WaitingCaller {
  readonly uid: number | undefined;
  readonly selectors: readonly Selector[];
}

/** One line's worth of names: the first few, cut short, and how many more there were. */
function listed(names: readonly string[]): { names: string[]; moreNames?: number } {
  const shown = names.slice(0, MAX_LISTED_NAMES).map((n) => cutText(n, MAX_LISTED_NAME_LENGTH));
  return names.length > MAX_LISTED_NAMES ? { names: shown, moreNames: names.length - MAX_LISTED_NAMES } : { names: shown };
}

/** The service-wide throttle of the lines; one per SDS service. */
export class WaitingNamesLog {
  private readonly perSet: LogThrottle;
  private readonly perUid = new Map<string, { until: number; lines: number; leftOut: number }>();

  constructor(private readonly clock: Clock) {
    this.perSet = new LogThrottle(clock, WINDOW_MS);
  }

  /** The tracker of one stream; `log` is the stream's logger (it names the rpc and the caller's pid, uid and gid). */
  forStream(log: Logger, caller: WaitingCaller): StreamWaitingNames {
    return new StreamWaitingNames(this, log, caller, this.clock);
  }

  /** undefined: leave this line out. Otherwise the fields to log it with, saying what was left out before it. */
  admit(kind: string, uid: number | undefined, names: readonly string[]): Record<string, number> | undefined {
    // Each kind has its own budget: lines saying names were served never crowd out the warnings.
    const uidKey = `${kind}\n${uid ?? ''}`;
    // A digest, not the names: the throttle keeps its keys, and a set of a thousand 2 KB names the caller chose
    // would stay resident, 2 MB a key, up to its 256 keys.
    const set = createHash('sha256').update(JSON.stringify(names)).digest('base64');
    const admitted = this.perSet.admit(`${uidKey}\n${set}`);
    if (admitted === undefined) return undefined;
    const now = this.clock.now();
    let budget = this.perUid.get(uidKey);
    // A window that starts in the future is over too: the wall clock was stepped back (NTP), and waiting for it to
    // come round again would leave this uid's lines out for as long as the step.
    if (budget === undefined || now >= budget.until || now < budget.until - WINDOW_MS) {
      const leftOut = budget?.leftOut ?? 0;
      this.perUid.delete(uidKey);
      if (this.perUid.size >= MAX_UIDS) this.perUid.delete(this.perUid.keys().next().value!);
      budget = { until: now + WINDOW_MS, lines: 0, leftOut };
      this.perUid.set(uidKey, budget);
    }
    if (budget.lines >= MAX_SETS_PER_UID) {
      budget.leftOut++;
      return undefined;
    }
    budget.lines++;
    const fields: Record<string, number> = { ...admitted };
    if (budget.leftOut > 0) fields['otherNameSetsLeftOut'] = budget.leftOut;
    budget.leftOut = 0;
    return fields;
  }
}

/**
 * What one stream is known to wait for. Streams call `update` after every look at their state; with nothing
 * unresolved and nothing waited for before, it returns at once, so a stream whose names are served pays nothing.
 */
export class StreamWaitingNames {
  /** Names the stream waited for without a signing under way: name → when first seen waiting. Made when needed. */
  private waiting: Map<string, number> | undefined;
  /** Who the stream's Envoy says it is (node id and cluster), set from its first request. */
  private node: Record<string, string> = {};

  constructor(
    private readonly service: WaitingNamesLog,
    private readonly log: Logger,
    private readonly caller: WaitingCaller,
    private readonly clock: Clock,
  ) {}

  /** Whether a name is waited for: update has work to do even when nothing is unresolved. */
  get active(): boolean {
    return this.waiting !== undefined && this.waiting.size > 0;
  }

  setNode(node: Record<string, string>): void {
    this.node = node;
  }

  /**
   * `unresolved`: the subscribed names with no secret now. `signing(name)`: whether one of those is missing only
   * because its SVID is being signed. `subscribed(name)`: whether the stream still asks for a name (one it dropped is
   * forgotten, not reported as served). Warns when a name starts waiting; says at info when waited-for names are served.
   */
  update(unresolved: readonly string[], signing: (name: string) => boolean, subscribed: (name: string) => boolean): void {
    if (unresolved.length === 0 && !this.active) return;
    const waiting = (this.waiting ??= new Map());
    const now = this.clock.now();
    const served: string[] = [];
    let waitedMs = 0;
    if (waiting.size > 0) {
      const pending = new Set(unresolved);
      for (const [name, since] of waiting) {
        if (pending.has(name)) continue;
        waiting.delete(name);
        if (!subscribed(name)) continue;
        served.push(name);
        waitedMs = Math.max(waitedMs, now - since);
      }
    }
    if (served.length > 0) {
      const admitted = this.service.admit('served', this.caller.uid, served);
      if (admitted !== undefined) {
        this.log.info({ ...this.node, ...listed(served), waitedMs, ...admitted }, 'SDS stream now gets secrets it waited for');
      }
    }

    let started = false;
    const unanswered: string[] = [];
    for (const name of unresolved) {
      if (waiting.has(name)) {
        unanswered.push(name);
      } else if (!signing(name)) {
        waiting.set(name, now);
        unanswered.push(name);
        started = true;
      }
    }
    if (!started) return;
    const admitted = this.service.admit('waiting', this.caller.uid, unanswered);
    if (admitted === undefined) return;
    this.log.warn(
      { ...this.node, ...listed(unanswered), selectors: this.caller.selectors.map(formatSelector), ...admitted },
      'SDS stream waits for secrets that resolve to nothing for its caller; compare the names with the caller\'s selectors and entries (meshid-server entry show)',
    );
  }
}
