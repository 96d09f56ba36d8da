/**
 * What each uid holds of one thing on the agent socket (connections, calls), against one cap for all uids. A uid at
 * its cap is refused more, and reported once (`onCapReached`) until it drops below: a flood logs one line per uid,
 * not one per refusal.
 */
export class PerUidCap {
  private readonly held = new Map<number, number>();
  private readonly reported = new Set<number>();

  /** `what` names the cap in the error for a bad one (the option or config key). */
  constructor(
    readonly limit: number,
    what: string,
    private readonly onCapReached: (uid: number) => void,
  ) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`${what} must be a whole number ≥ 1, got ${limit}`);
  }

  /** Counts one more for `uid`, unless it is at the cap. */
  admit(uid: number): boolean {
    const held = this.held.get(uid) ?? 0;
    if (held >= this.limit) {
      if (!this.reported.has(uid)) {
        this.reported.add(uid);
        this.onCapReached(uid);
      }
      return false;
    }
    this.held.set(uid, held + 1);
    return true;
  }

  /** Counts one less for `uid` (one that admit() let in). */
  release(uid: number): void {
    const held = (this.held.get(uid) ?? 1) - 1;
    if (held <= 0) this.held.delete(uid);
    else this.held.set(uid, held);
    if (held < this.limit) this.reported.delete(uid);
  }

  /** What `uid` holds right now. */
  count(uid: number): number {
    return this.held.get(uid) ?? 0;
  }
}
