import { resourceExhausted } from '../../common/errors.js';

/**
 * Characters of resource names the open SDS streams of one uid may hold in all. The per-request limits (1,000 names of
 * up to 2,048 bytes) allow 2 MB of names per stream, which a stream keeps for its life in several forms (~6.6 MB
 * measured for a StreamSecrets stream, ~4.5 MB for a DeltaSecrets one), and a uid may hold max_calls_per_uid (4,096)
 * streams: one local process could have grown the agent by gigabytes. Far above any real fleet of one uid: Istio's
 * ~110 sidecars of a node each subscribe a few names of ~60 characters (tens of KB in all), and a delta stream
 * subscribing 1,000 names of the longest SPIFFE IDs still fits four times over.
 */
export const DEFAULT_NAME_CHARS_PER_UID = 8 * 1024 * 1024;

/**
 * What the SDS streams of each uid hold in resource names, so that one uid cannot grow the agent without bound by
 * subscribing long name lists on many streams. Each stream takes a share (forStream) and resizes it whenever its
 * subscription changes; a change that would take the uid past the limit is refused RESOURCE_EXHAUSTED (the stream
 * ends with it, and its share is released). Only uids with open streams are kept.
 */
export class SubscriptionBudget {
  private readonly held = new Map<number | undefined, number>();

  constructor(readonly limit = DEFAULT_NAME_CHARS_PER_UID) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`the subscribed name budget must be a positive integer, got ${limit}`);
  }

  /** Characters held by the streams of `uid` now (0 for a uid without streams). */
  heldBy(uid: number | undefined): number {
    return this.held.get(uid) ?? 0;
  }

  /** How many uids hold a share now. */
  get uids(): number {
    return this.held.size;
  }

  /** The share of one stream of `uid` (undefined: a connection the socket did not record; such callers share one). */
  forStream(uid: number | undefined): StreamNameShare {
    let charged = 0;
    const set = (chars: number): void => {
      const total = this.heldBy(uid) - charged + chars;
      if (total > 0) this.held.set(uid, total);
      else this.held.delete(uid);
      charged = chars;
    };
    return {
      resize: (chars: number): void => {
        if (chars > charged && this.heldBy(uid) - charged + chars > this.limit) {
          throw resourceExhausted(
            `the SDS streams of this caller's uid would hold ${this.heldBy(uid) - charged + chars} characters of resource ` +
              `names; at most ${this.limit} are accepted per uid (close streams, or subscribe fewer or shorter names)`,
          );
        }
        set(chars);
      },
      release: (): void => set(0),
    };
  }
}

/** One stream's share of its uid's budget. */
export interface StreamNameShare {
  /** Makes the stream's share `chars` (its subscription now); throws resource_exhausted when the uid has no room. */
  resize(chars: number): void;
  /** The stream is over: its share goes back. */
  release(): void;
}

/** The characters a list of names holds, as the budget counts them. */
export function nameChars(names: Iterable<string>): number {
  let chars = 0;
  for (const name of names) chars += name.length;
  return chars;
}
