import { randomBytes } from 'node:crypto';
import { Tag } from './der.js';

/** Random bytes fetched in batches: one randomBytes call per 256 serials instead of one per certificate. */
const BATCH = 256;
const SERIAL_OCTETS = 16;
let pool = Buffer.alloc(0);
let used = 0;

/**
 * A fresh certificate serial number as a complete DER INTEGER. RFC 5280 §4.1.2.2 wants a positive integer of at most
 * 20 octets, unique per issuer; Go ≥ 1.23 rejects negative ones (SPEC-NOTES §3). Sixteen octets whose first byte is
 * forced into 0x40–0x7f: always positive, never needing a leading 0x00, always minimal, and 126 random bits make a
 * collision negligible.
 */
export function randomSerial(): Buffer {
  if (used + SERIAL_OCTETS > pool.length) {
    pool = randomBytes(SERIAL_OCTETS * BATCH);
    used = 0;
  }
  const out = Buffer.allocUnsafe(2 + SERIAL_OCTETS);
  out[0] = Tag.INTEGER;
  out[1] = SERIAL_OCTETS;
  pool.copy(out, 2, used, used + SERIAL_OCTETS);
  used += SERIAL_OCTETS;
  out[2] = (out[2]! & 0x3f) | 0x40;
  return out;
}
