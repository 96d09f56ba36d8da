/**
 * The places a bound on connections hands out, indexed by the source address (source-key.ts) holding each, oldest
 * first per source, so that a full bound is shared instead of first-come: a client that fills it from a few addresses
 * gives way, one connection at a time, to sources holding fewer (takeFromHeaviest). To keep a newcomer out it must
 * then hold no more on each of its addresses than the newcomer's source does.
 */
export class PlacesBySource<T> {
  private readonly bySource = new Map<string, Set<T>>();
  private held = 0;

  /** Places held by all sources together. */
  get size(): number {
    return this.held;
  }

  heldBy(source: string): number {
    return this.bySource.get(source)?.size ?? 0;
  }

  add(source: string, holder: T): void {
    let holders = this.bySource.get(source);
    if (holders === undefined) this.bySource.set(source, (holders = new Set()));
    if (holders.has(holder)) return;
    holders.add(holder);
    this.held++;
  }

  /** Gives `holder`'s place back; a no-op when it is not held (a connection closing after it was taken away). */
  remove(source: string, holder: T): void {
    const holders = this.bySource.get(source);
    if (holders?.delete(holder) !== true) return;
    this.held--;
    if (holders.size === 0) this.bySource.delete(source);
  }

  /** Takes away the oldest place of `source`, and returns its holder to close; undefined when it holds none. */
  takeOldest(source: string): T | undefined {
    const oldest = this.bySource.get(source)?.values().next().value;
    if (oldest !== undefined) this.remove(source, oldest);
    return oldest;
  }

  /**
   * Takes away the oldest place of the source holding the most, for a newcomer from `source`, and returns its holder
   * to close with that source; undefined when that would leave it holding fewer than `source` then would (`source`
   * is among the heaviest, or one short of them): taking from it would only swap the two, and two sources
   * reconnecting would close each other's connections in turn. The scan visits each source once, and a source holds
   * at least one place, so it is bounded by the bound itself (a few thousand map entries, microseconds); it runs only
   * when the bound is full, for a newcomer whose TLS handshake cost the server far more.
   */
  takeFromHeaviest(source: string): { holder: T; source: string } | undefined {
    let heaviest: string | undefined;
    let most = 0;
    for (const [s, holders] of this.bySource) {
      if (holders.size > most) {
        heaviest = s;
        most = holders.size;
      }
    }
    if (heaviest === undefined || most - 1 < this.heldBy(source) + 1) return undefined;
    const holder = this.takeOldest(heaviest);
    return holder === undefined ? undefined : { holder, source: heaviest };
  }
}
