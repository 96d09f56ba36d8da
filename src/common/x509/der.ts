/**
 * A tiny DER (X.690) encoder: just the types X.509 certificates and PKCS#10 requests need. Everything returns a
 * complete TLV as a Buffer so callers can pre-encode constant pieces once and concatenate them on the hot path.
 */

/** Universal tags used by meshid's certificates. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** The length octets for a value of `n` bytes (definite form, minimal, as DER requires). */
export function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  throw new RangeError(`DER value of ${n} bytes is too long`);
}

/** One TLV with a single-octet tag. */
function tlv(tag: number, ...value: Buffer[]): Buffer {
  const body = value.length === 1 ? value[0]! : Buffer.concat(value);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(Tag.SEQUENCE, ...items);

/** A SET OF; DER sorts the encoded elements (X.690 §11.6). */
export function setOf(...items: Buffer[]): Buffer {
  return tlv(Tag.SET, ...[...items].sort(Buffer.compare));
}

/** [n] EXPLICIT: a constructed context tag wrapping a complete TLV. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);

/** [n] IMPLICIT on a primitive value (e.g. GeneralName URI [6], AKI keyIdentifier [0]). */
export const implicitPrimitive = (n: number, value: Buffer): Buffer => tlv(0x80 | n, value);

/** [n] IMPLICIT on a constructed value (e.g. the PKCS#10 attributes [0]). */
export const implicitConstructed = (n: number, ...items: Buffer[]): Buffer => tlv(0xa0 | n, ...items);

export const boolean = (value: boolean): Buffer => Buffer.from([Tag.BOOLEAN, 1, value ? 0xff : 0x00]);

export const nullValue = (): Buffer => Buffer.from([Tag.NULL, 0]);

/** A non-negative INTEGER from its unsigned big-endian magnitude (a 0x00 is prepended when the top bit is set). */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const m = magnitude.subarray(start);
  if (m.length === 0) return Buffer.from([Tag.INTEGER, 1, 0]);
  return m[0]! & 0x80 ? tlv(Tag.INTEGER, Buffer.from([0]), m) : tlv(Tag.INTEGER, m);
}

/** A small non-negative INTEGER (versions, pathLenConstraint). */
export function smallInteger(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError(`INTEGER ${n} out of range`);
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return unsignedInteger(Buffer.from(bytes));
}

const oidCache = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER from dotted form (memoized: the same few OIDs are written for every certificate). */
export function oid(dotted: string): Buffer {
  let encoded = oidCache.get(dotted);
  if (encoded === undefined) {
    encoded = encodeOid(dotted);
    oidCache.set(dotted, encoded);
  }
  return encoded;
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new RangeError(`bad OID "${dotted}"`);
    return BigInt(a);
  });
  if (arcs.length < 2 || arcs[0]! > 2n) throw new RangeError(`bad OID "${dotted}"`);
  const out: number[] = [];
  const push = (arc: bigint): void => {
    const septets: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) septets.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...septets);
  };
  push(arcs[0]! * 40n + arcs[1]!);
  for (const arc of arcs.slice(2)) push(arc);
  return tlv(Tag.OID, Buffer.from(out));
}

export const octetString = (value: Buffer): Buffer => tlv(Tag.OCTET_STRING, value);

/** A BIT STRING holding whole bytes (signatures, public keys): zero unused bits. */
export const bitStringBytes = (value: Buffer): Buffer => tlv(Tag.BIT_STRING, Buffer.from([0]), value);

/**
 * A named-bit BIT STRING (keyUsage). DER drops trailing zero bits (X.690 §11.2.2), so the unused-bit count is the
 * number of zero bits after the highest set bit. `bits` are the bit numbers that are set (0 = most significant).
 */
export function namedBitString(bits: readonly number[]): Buffer {
  if (bits.length === 0) return Buffer.from([Tag.BIT_STRING, 1, 0]);
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  const unused = 7 - (highest & 7);
  return tlv(Tag.BIT_STRING, Buffer.from([unused]), bytes);
}

export const utf8String = (s: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));

const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/**
 * An X.509 Time (RFC 5280 §4.1.2.5): UTCTime YYMMDDHHMMSSZ for 1950 through 2049, GeneralizedTime YYYYMMDDHHMMSSZ
 * otherwise; always UTC with whole seconds. Milliseconds are truncated, so the encoded instant is never later than
 * the one asked for.
 */
export function time(ms: number): Buffer {
  if (!Number.isFinite(ms)) throw new RangeError('time is not a finite number');
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} cannot be encoded in an X.509 Time`);
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (year >= 1950 && year <= 2049) return tlv(Tag.UTC_TIME, Buffer.from(pad2(year % 100) + rest, 'latin1'));
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(year).padStart(4, '0') + rest, 'latin1'));
}
