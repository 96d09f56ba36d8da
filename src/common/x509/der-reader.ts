/**
 * A minimal, strict DER reader: enough to walk certificates, CSRs and concatenated DER. It only tracks offsets (no
 * copies), refuses indefinite lengths and non-minimal length octets, and never reads past the buffer. Errors are
 * plain DerError; the public modules turn them into MeshidError with context.
 */

export class DerError extends Error {
  override name = 'DerError';
}

/** One TLV inside `buf`: the tag octet, where its header starts, where its value starts and ends. */
export interface Tlv {
  readonly buf: Buffer;
  readonly tag: number;
  readonly start: number;
  readonly valueStart: number;
  readonly end: number;
}

/** Reads the TLV at `offset`, which must end at or before `limit`. */
export function readTlv(buf: Buffer, offset = 0, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError(`truncated DER at offset ${offset}`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`multi-byte DER tags are not supported (offset ${offset})`);
  const first = buf[offset + 1]!;
  let length: number;
  let valueStart: number;
  if (first < 0x80) {
    length = first;
    valueStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new DerError(`indefinite length is not DER (offset ${offset})`);
    if (count > 4) throw new DerError(`DER length too large (offset ${offset})`);
    if (offset + 2 + count > limit) throw new DerError(`truncated DER length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i]!;
    if (length < 0x80 || buf[offset + 2] === 0) throw new DerError(`non-minimal DER length at offset ${offset}`);
    valueStart = offset + 2 + count;
  }
  const end = valueStart + length;
  if (end > limit) throw new DerError(`DER value at offset ${offset} runs past its container (${end} > ${limit})`);
  return { buf, tag, start: offset, valueStart, end };
}

/** The complete encoding (header + value) of a TLV, without copying. */
export const raw = (t: Tlv): Buffer => t.buf.subarray(t.start, t.end);

/** The value octets of a TLV, without copying. */
export const value = (t: Tlv): Buffer => t.buf.subarray(t.valueStart, t.end);

/** The TLVs directly inside a constructed TLV, in order; they must fill it exactly. */
export function children(t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = t.valueStart; at < t.end; ) {
    const c = readTlv(t.buf, at, t.end);
    out.push(c);
    at = c.end;
  }
  return out;
}

/** Asserts the tag of a TLV, naming what was expected. */
export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined) throw new DerError(`${what} is missing`);
  if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
  return t;
}

/** Reads a whole buffer as exactly one TLV (no trailing bytes). */
export function readSingle(buf: Buffer, what: string): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError(`${what} has ${buf.length - t.end} trailing bytes`);
  return t;
}

/** Decodes an OBJECT IDENTIFIER's value to dotted form. */
/**
 * Longer OBJECT IDENTIFIERs are refused: the longest in use (a 2.25 UUID arc) takes about 20 bytes, and decoding an
 * arc of n bytes costs O(n²) in BigInt shifts, which a peer's CSR must not be able to make seconds long.
 */
const MAX_OID_BYTES = 128;

export function readOid(t: Tlv): string {
  const v = value(t);
  if (v.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  if (v.length > MAX_OID_BYTES) throw new DerError(`OBJECT IDENTIFIER of ${v.length} bytes (at most ${MAX_OID_BYTES})`);
  if (v[v.length - 1]! & 0x80) throw new DerError('truncated OBJECT IDENTIFIER');
  let out = '';
  for (let i = 0; i < v.length; ) {
    // Arcs are read as Numbers (every certificate has a dozen OIDs); one too long for that (a 2.25 UUID arc) as a
    // BigInt.
    let end = i;
    while (v[end]! & 0x80) end++;
    let arc: number | bigint = 0;
    if (end - i < 7) {
      for (let j = i; j <= end; j++) arc = arc * 128 + (v[j]! & 0x7f);
    } else {
      let big = 0n;
      for (let j = i; j <= end; j++) big = (big << 7n) | BigInt(v[j]! & 0x7f);
      arc = big;
    }
    if (i === 0) {
      const first = arc < 80 ? Math.floor(Number(arc) / 40) : 2;
      out = `${first}.${typeof arc === 'bigint' ? arc - BigInt(first * 40) : arc - first * 40}`;
    } else out += `.${arc}`;
    i = end + 1;
  }
  return out;
}

/** Decodes a UTCTime or GeneralizedTime (RFC 5280 §4.1.2.5 forms: UTC, whole seconds) to epoch milliseconds. */
export function readTime(t: Tlv): number {
  const s = value(t).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === 0x17) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (m === null) throw new DerError(`malformed UTCTime "${s}"`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (t.tag === 0x18) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (m === null) throw new DerError(`malformed GeneralizedTime "${s}"`);
    year = Number(m[1]);
  } else throw new DerError(`expected a Time, found tag 0x${t.tag.toString(16)}`);
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  // Date.UTC maps years 0–99 onto 1900–1999; correct that for GeneralizedTime.
  const d = new Date(ms);
  if (year < 100) d.setUTCFullYear(year);
  return d.getTime();
}

/** A BOOLEAN's value (DER: 0x00 or 0xff). */
export function readBoolean(t: Tlv): boolean {
  const v = value(t);
  if (t.tag !== 0x01 || v.length !== 1 || (v[0] !== 0 && v[0] !== 0xff)) throw new DerError('malformed BOOLEAN');
  return v[0] === 0xff;
}

/** A small non-negative INTEGER (version, pathLenConstraint). */
export function readSmallInteger(t: Tlv): number {
  const v = value(t);
  if (t.tag !== 0x02 || v.length === 0 || v.length > 4 || v[0]! & 0x80) throw new DerError('malformed or out-of-range INTEGER');
  return v.reduce((acc, b) => acc * 256 + b, 0);
}

/** The bytes of a BIT STRING with zero unused bits (keys, signatures). */
export function readBitStringBytes(t: Tlv): Buffer {
  const v = value(t);
  if (t.tag !== 0x03 || v.length === 0 || v[0] !== 0) throw new DerError('expected a BIT STRING of whole bytes');
  return v.subarray(1);
}
