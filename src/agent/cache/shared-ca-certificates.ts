/**
 * Every SVID's chain ends in one of the same few intermediates. Storing one Buffer per distinct CA certificate
 * instead of a copy per SVID saves ~600 bytes per SVID (6 MB for 10,000 SVIDs). Bounded: after a rotation the old
 * intermediates fall out as new ones arrive; an evicted certificate still in use simply gets copied again.
 */
const shared = new Map<string, Buffer>();
const LIMIT = 32;

/** The agent-wide Buffer holding these CA certificate bytes (a copy of `der` the first time they are seen). */
export function sharedCaCertificate(der: Buffer): Buffer {
  const key = der.toString('latin1');
  let b = shared.get(key);
  if (b === undefined) {
    b = Buffer.from(der);
    if (shared.size >= LIMIT) shared.delete(shared.keys().next().value!);
    shared.set(key, b);
  }
  return b;
}
