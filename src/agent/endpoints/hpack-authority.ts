/**
 * Makes a client's `:authority` one that Node's HTTP/2 server accepts, inside HPACK header blocks (RFC 7541).
 *
 * Over a Unix socket grpc-java (so java-spiffe) sends the socket's path as `:authority`. nghttp2, under Node's HTTP/2
 * server, resets every stream whose `:authority` holds a character outside RFC 3986's authority set, such as `/`,
 * where grpc-go's server (SPIRE's) accepts anything; no option of Node's turns the check off. The authority means
 * nothing on a Unix socket, so each character outside the set is replaced in place by an allowed one of the same
 * Huffman code length. The block keeps its length, and the client's and nghttp2's dynamic tables keep entries of the
 * same sizes, so every later reference resolves to the same slot on both sides.
 */

/** Code lengths of RFC 7541 Appendix B, symbols 0–255; the code is canonical, so the lengths define it. */
const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];
const EOS = 256;
const EOS_LENGTH = 30;

/** Names of RFC 7541 Appendix A's static table, index 1 first: a literal naming one inserts an entry of its length. */
const STATIC_NAMES = [
  ':authority', ':method', ':method', ':path', ':path', ':scheme', ':scheme', ':status', ':status', ':status', ':status',
  ':status', ':status', ':status', 'accept-charset', 'accept-encoding', 'accept-language', 'accept-ranges', 'accept',
  'access-control-allow-origin', 'age', 'allow', 'authorization', 'cache-control', 'content-disposition',
  'content-encoding', 'content-language', 'content-length', 'content-location', 'content-range', 'content-type',
  'cookie', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match',
  'if-range', 'if-unmodified-since', 'last-modified', 'link', 'location', 'max-forwards', 'proxy-authenticate',
  'proxy-authorization', 'range', 'referer', 'refresh', 'retry-after', 'server', 'set-cookie',
  'strict-transport-security', 'transfer-encoding', 'user-agent', 'vary', 'via', 'www-authenticate',
];
const AUTHORITY = ':authority';
/** RFC 7541 §4.1: an entry's size counts its name and value octets plus this overhead. */
const ENTRY_OVERHEAD = 32;
/** SETTINGS_HEADER_TABLE_SIZE's initial value, which Node's server keeps. */
export const DEFAULT_TABLE_SIZE = 4096;

/** RFC 3986's authority characters: unreserved, sub-delims, `:`, `@`, `[`, `]` and the `%` of percent-encoding. */
const AUTHORITY_CHARACTERS = new Set(
  Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@[]%", 'latin1'),
);

interface Code {
  code: number;
  length: number;
}

const CODES: Code[] = canonicalCodes([...CODE_LENGTHS, EOS_LENGTH]);
/** Decoding tree: a node is [child for bit 0, child for bit 1]; a leaf is its symbol. */
type TreeNode = [TreeNode | number | undefined, TreeNode | number | undefined];
const TREE = buildTree(CODES);
/** For each code length, an authority character with a code of that length; none for most long codes. */
const REPLACEMENT_BY_LENGTH = new Map<number, number>();
for (const symbol of [...AUTHORITY_CHARACTERS].sort((a, b) => a - b)) {
  if (symbol === 0x25) continue; // '%' alone would start a broken percent-encoding
  const { length } = CODES[symbol]!;
  if (!REPLACEMENT_BY_LENGTH.has(length)) REPLACEMENT_BY_LENGTH.set(length, symbol);
}

function canonicalCodes(lengths: number[]): Code[] {
  const order = lengths.map((_, symbol) => symbol).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const codes: Code[] = [];
  let code = 0;
  let previous = lengths[order[0]!]!;
  for (const symbol of order) {
    code *= 2 ** (lengths[symbol]! - previous);
    previous = lengths[symbol]!;
    codes[symbol] = { code, length: previous };
    code += 1;
  }
  return codes;
}

function buildTree(codes: Code[]): TreeNode {
  const root: TreeNode = [undefined, undefined];
  codes.forEach(({ code, length }, symbol) => {
    let node = root;
    for (let bit = length - 1; bit > 0; bit--) {
      const side = Math.floor(code / 2 ** bit) % 2;
      node[side] ??= [undefined, undefined];
      node = node[side] as TreeNode;
    }
    node[code % 2] = symbol;
  });
  return root;
}

/** Decodes a Huffman-coded string to its symbols, or undefined for a malformed one (RFC 7541 §5.2). */
export function huffmanDecode(bytes: Uint8Array): number[] | undefined {
  const symbols: number[] = [];
  let node = TREE;
  let depth = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const side = (byte >> bit) & 1;
      const next = node[side];
      if (next === undefined) return undefined;
      depth += 1;
      allOnes &&= side === 1;
      if (typeof next === 'number') {
        if (next === EOS) return undefined;
        symbols.push(next);
        node = TREE;
        depth = 0;
        allOnes = true;
      } else {
        node = next;
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the EOS code's first bits).
  return depth < 8 && allOnes ? symbols : undefined;
}

/** Encodes symbols into `out`, which must be exactly as long as their code, padded with ones. */
export function huffmanEncodeInto(symbols: number[], out: Uint8Array): void {
  out.fill(0);
  let bitPosition = 0;
  for (const symbol of symbols) {
    const { code, length } = CODES[symbol]!;
    for (let bit = length - 1; bit >= 0; bit--) {
      if (Math.floor(code / 2 ** bit) % 2 === 1) out[bitPosition >> 3]! |= 0x80 >> (bitPosition & 7);
      bitPosition += 1;
    }
  }
  for (; bitPosition < out.length * 8; bitPosition++) out[bitPosition >> 3]! |= 0x80 >> (bitPosition & 7);
}

/** Replaces a disallowed octet of a raw (not Huffman-coded) string, where any allowed one keeps every length. */
const RAW_REPLACEMENT = 0x2d; // '-'

/**
 * An authority's characters with every disallowed one replaced by an allowed one: of the same code length when the
 * string is Huffman-coded, any when it is raw.
 */
function repairedSymbols(symbols: number[], huffman: boolean): number[] | undefined {
  const repaired: number[] = [];
  for (const symbol of symbols) {
    if (AUTHORITY_CHARACTERS.has(symbol)) {
      repaired.push(symbol);
      continue;
    }
    const replacement = huffman ? REPLACEMENT_BY_LENGTH.get(CODES[symbol]!.length) : RAW_REPLACEMENT;
    if (replacement === undefined) return undefined;
    repaired.push(replacement);
  }
  return repaired;
}

class MalformedBlock extends Error {}

/**
 * Follows one connection's request header blocks, client to server, and repairs `:authority` values in place. It
 * tracks the decoder's dynamic table (names and sizes) because a literal may name its header by a dynamic index.
 * After a block it cannot parse it stops touching anything: nghttp2 will fail that connection itself.
 */
export class AuthorityRepair {
  /** Dynamic table, newest first. */
  private readonly table: { name: string; size: number }[] = [];
  private tableSize = 0;
  private maxTableSize = DEFAULT_TABLE_SIZE;
  private lost = false;
  /** Whether any value was changed: the connection then needs this repair for its whole life. */
  repaired = false;

  /** Repairs `block`, the concatenated fragments of one header block, in place. */
  repairBlock(block: Buffer): void {
    if (this.lost) return;
    try {
      this.walk(block);
    } catch (err) {
      if (!(err instanceof MalformedBlock)) throw err;
      this.lost = true;
    }
  }

  private walk(block: Buffer): void {
    let offset = 0;
    const integer = (prefixBits: number): number => {
      if (offset >= block.length) throw new MalformedBlock();
      const max = 2 ** prefixBits - 1;
      let value = block[offset++]! & max;
      if (value < max) return value;
      let shift = 0;
      for (;;) {
        if (offset >= block.length || shift > 28) throw new MalformedBlock();
        const byte = block[offset++]!;
        value += (byte & 0x7f) * 2 ** shift;
        shift += 7;
        if ((byte & 0x80) === 0) return value;
      }
    };
    const string = (): { start: number; end: number; huffman: boolean } => {
      if (offset >= block.length) throw new MalformedBlock();
      const huffman = (block[offset]! & 0x80) !== 0;
      const length = integer(7);
      const start = offset;
      offset += length;
      if (offset > block.length) throw new MalformedBlock();
      return { start, end: offset, huffman };
    };
    const decodedLength = (s: { start: number; end: number; huffman: boolean }): number => {
      if (!s.huffman) return s.end - s.start;
      const symbols = huffmanDecode(block.subarray(s.start, s.end));
      if (symbols === undefined) throw new MalformedBlock();
      return symbols.length;
    };
    while (offset < block.length) {
      const first = block[offset]!;
      if (first & 0x80) {
        if (integer(7) === 0) throw new MalformedBlock();
        continue;
      }
      if ((first & 0xe0) === 0x20) {
        this.resize(integer(5));
        continue;
      }
      const indexing = (first & 0xc0) === 0x40;
      const nameIndex = integer(indexing ? 6 : 4);
      let name: string;
      let nameLength: number;
      if (nameIndex === 0) {
        const literal = string();
        // Not String.fromCharCode(...symbols): a name may be some 100,000 symbols, too many arguments for the stack.
        name = literal.huffman
          ? Buffer.from(huffmanDecode(block.subarray(literal.start, literal.end)) ?? this.malformed()).toString('latin1')
          : block.toString('latin1', literal.start, literal.end);
        nameLength = name.length;
      } else {
        name = this.nameAt(nameIndex);
        nameLength = name.length;
      }
      const value = string();
      if (name === AUTHORITY) this.repairValue(block, value);
      if (indexing) this.insert(name, nameLength + decodedLength(value) + ENTRY_OVERHEAD);
    }
  }

  private malformed(): never {
    throw new MalformedBlock();
  }

  private nameAt(index: number): string {
    if (index <= STATIC_NAMES.length) return STATIC_NAMES[index - 1]!;
    const entry = this.table[index - STATIC_NAMES.length - 1];
    if (entry === undefined) throw new MalformedBlock();
    return entry.name;
  }

  private repairValue(block: Buffer, value: { start: number; end: number; huffman: boolean }): void {
    const bytes = block.subarray(value.start, value.end);
    if (!value.huffman) {
      const repaired = repairedSymbols([...bytes], false);
      if (repaired === undefined || repaired.every((symbol, i) => symbol === bytes[i])) return;
      bytes.set(repaired);
      this.repaired = true;
      return;
    }
    const symbols = huffmanDecode(bytes);
    if (symbols === undefined) throw new MalformedBlock();
    const repaired = repairedSymbols(symbols, true);
    if (repaired === undefined || repaired.every((symbol, i) => symbol === symbols[i])) return;
    huffmanEncodeInto(repaired, bytes);
    this.repaired = true;
  }

  private insert(name: string, size: number): void {
    this.table.unshift({ name, size });
    this.tableSize += size;
    this.evict();
  }

  private resize(size: number): void {
    this.maxTableSize = size;
    this.evict();
  }

  private evict(): void {
    while (this.tableSize > this.maxTableSize && this.table.length > 0) this.tableSize -= this.table.pop()!.size;
  }
}
