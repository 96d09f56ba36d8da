/**
 * When more than a batch is waiting (a mass rotation, a taint, a restart after a long outage), the SVIDs open
 * streams are watching go first: the workloads in use get their new identity after one batch, not after all. Within
 * each of the two, the SVID that expires soonest goes first (an entry with none first: nothing is served for it). The
 * entries an outage failed come back in the order their renewals fell due, which is not the order they expire in
 * when TTLs differ: a 24 h SVID renewed at its half-life has 12 h left, a 10 min one that fell due after it 5 min.
 *
 * `queued` in catch-up order, or undefined when it is in that order already. `watched`: the entries open streams
 * watch (IdentityCache.entriesInUse); `expiryOf`: the NotAfter of the SVID served for an entry, if any.
 */
export function catchUpOrder(
  queued: ReadonlySet<string>,
  watched: ReadonlySet<string>,
  expiryOf: (entryId: string) => number | undefined,
): Set<string> | undefined {
  const order = [...queued];
  const keyed = order.map((id) => ({ id, rank: watched.has(id) ? 0 : 1, expiry: expiryOf(id) ?? -Infinity }));
  const before = (a: (typeof keyed)[number], b: (typeof keyed)[number]): number => a.rank - b.rank || (a.expiry === b.expiry ? 0 : a.expiry < b.expiry ? -1 : 1);
  if (keyed.every((k, i) => i === 0 || before(keyed[i - 1]!, k) <= 0)) return undefined;
  // Stable: entries of the same rank and expiry (a burst of new ones) keep the order they were asked for in.
  return new Set(keyed.sort(before).map((k) => k.id));
}
