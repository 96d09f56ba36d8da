// Hand-made protobuf wire bytes for malformed-request tests, written from the encoding spec (tag = field << 3 | wire
// type; varints little-endian base 128), independent of protobufjs so the tests can build what no encoder would.

export type Bytes = readonly number[] | Buffer;

/** A varint of any size up to 64 bits. */
export function varint(value: number | bigint): number[] {
  let n = BigInt(value);
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}

export function tag(field: number | bigint, wireType: number): number[] {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

/** A length-delimited field (wire type 2): string, bytes, sub-message or packed scalars. */
export function delimited(field: number | bigint, payload: Bytes | string): number[] {
  const bytes = typeof payload === 'string' ? [...Buffer.from(payload)] : [...payload];
  return [...tag(field, 2), ...varint(bytes.length), ...bytes];
}

export function varintField(field: number, value: number | bigint): number[] {
  return [...tag(field, 0), ...varint(value)];
}

export function message(...parts: Bytes[]): Buffer {
  return Buffer.from(parts.flatMap((p) => [...p]));
}
