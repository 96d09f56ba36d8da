// A deliberately tiny, independent protobuf wire reader for tests: it knows nothing about the .proto files, so the
// field numbers and wire types it reports come from the bytes alone (SPEC-NOTES §14: tag = field << 3 | wire type).

export interface WireField {
  field: number;
  wireType: number;
  /** Varints as bigint; length-delimited payloads as Buffer. */
  value: bigint | Buffer;
}

function readVarint(buf: Buffer, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const byte = buf[pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

export function readFields(buf: Buffer): WireField[] {
  const fields: WireField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [tag, afterTag] = readVarint(buf, pos);
    const field = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    pos = afterTag;
    if (wireType === 0) {
      const [v, next] = readVarint(buf, pos);
      fields.push({ field, wireType, value: v });
      pos = next;
    } else if (wireType === 2) {
      const [len, next] = readVarint(buf, pos);
      const end = next + Number(len);
      if (end > buf.length) throw new Error('truncated length-delimited field');
      fields.push({ field, wireType, value: buf.subarray(next, end) });
      pos = end;
    } else {
      throw new Error(`unexpected wire type ${wireType}`);
    }
  }
  return fields;
}

/** The only occurrence of `field`, which must be length-delimited. */
export function bytesField(buf: Buffer, field: number): Buffer {
  const found = readFields(buf).filter((f) => f.field === field);
  if (found.length !== 1) throw new Error(`expected exactly one field ${field}, found ${found.length}`);
  const [f] = found;
  if (f!.wireType !== 2 || !Buffer.isBuffer(f!.value)) throw new Error(`field ${field} is not length-delimited`);
  return f!.value;
}

/** Field numbers in wire order, with wire types: e.g. ["1:2", "2:2"]. */
export function layout(buf: Buffer): string[] {
  return readFields(buf).map((f) => `${f.field}:${f.wireType}`);
}

/** Hand-encodes a message from (field, value) pairs: strings/Buffers length-delimited, numbers as varints. */
export function encodeFields(pairs: Array<[number, string | Buffer | number]>): Buffer {
  const varint = (n: number): Buffer => {
    const out: number[] = [];
    let v = n;
    while (v > 0x7f) {
      out.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(v);
    return Buffer.from(out);
  };
  return Buffer.concat(
    pairs.map(([field, value]) => {
      if (typeof value === 'number') return Buffer.concat([varint(field << 3), varint(value)]);
      const payload = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
      return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
    }),
  );
}
