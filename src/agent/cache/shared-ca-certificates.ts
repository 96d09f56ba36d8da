import { certificateKeyIds } from '../../common/x509/certificate.js';

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

/**
 * The key identifiers of a CA certificate returned by sharedCaCertificate, read once per shared Buffer: checking
 * every held SVID against tainted authorities would otherwise walk the same intermediate's DER ten thousand times.
 * Keyed by the Buffer itself, which is safe for the same reason sharing it is: nothing ever writes to these bytes.
 */
export function sharedCaKeyIds(sharedDer: Buffer): { subjectKeyId?: string; authorityKeyId?: string } {
  let ids = keyIds.get(sharedDer);
  if (ids === undefined) keyIds.set(sharedDer, (ids = certificateKeyIds(sharedDer)));
  return ids;
}
const keyIds = new WeakMap<Buffer, { subjectKeyId?: string; authorityKeyId?: string }>();
