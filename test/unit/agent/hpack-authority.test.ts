import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthorityRepair, huffmanDecode, huffmanEncodeInto } from '../../../src/agent/endpoints/hpack-authority.js';
import { ClientFrames } from '../../../src/agent/endpoints/authority-relay.js';
import { CLIENT_PREFACE, http2Frame } from '../../support/http2-frames.js';

// RFC 7541 C.4.1: "www.example.com", Huffman-coded.
const EXAMPLE = Buffer.from('f1e3c2e5f23a6ba0ab90f4ff', 'hex');
const AUTHORITY_CHARACTERS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;

function rawString(value: string): Buffer {
  assert.ok(value.length < 127);
  return Buffer.concat([Buffer.from([value.length]), Buffer.from(value, 'latin1')]);
}

function huffmanString(value: string): Buffer {
  const symbols = [...Buffer.from(value, 'latin1')];
  // Find the encoded length by encoding into a generous buffer and counting bytes up to the padding.
  let length = 1;
  for (;;) {
    const out = Buffer.alloc(length);
    huffmanEncodeInto(symbols, out);
    const decoded = huffmanDecode(out);
    if (decoded !== undefined && Buffer.from(decoded).toString('latin1') === value) return Buffer.concat([Buffer.from([0x80 | length]), out]);
    length += 1;
    assert.ok(length < 127);
  }
}

/** The :authority value of a block holding one literal with incremental indexing on static name 1. */
function authorityOf(block: Buffer): string {
  assert.equal(block[0], 0x41);
  const huffman = (block[1]! & 0x80) !== 0;
  const bytes = block.subarray(2, 2 + (block[1]! & 0x7f));
  return huffman ? Buffer.from(huffmanDecode(bytes)!).toString('latin1') : bytes.toString('latin1');
}

test('Huffman decoding follows RFC 7541 C.4.1, and encoding gives the same bytes back', () => {
  const symbols = huffmanDecode(EXAMPLE)!;
  assert.equal(Buffer.from(symbols).toString('latin1'), 'www.example.com');
  const out = Buffer.alloc(EXAMPLE.length);
  huffmanEncodeInto(symbols, out);
  assert.deepEqual(out, EXAMPLE);
  assert.equal(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), undefined, 'EOS or padding of 8+ bits is malformed');
});

test('a raw :authority holding the socket path is repaired in place, keeping its length', () => {
  const path = '/run/meshid/agent/api.sock';
  const block = Buffer.concat([Buffer.from([0x41]), rawString(path)]);
  const repair = new AuthorityRepair();
  repair.repairBlock(block);
  assert.equal(repair.repaired, true);
  const value = authorityOf(block);
  assert.equal(value.length, path.length);
  assert.match(value, AUTHORITY_CHARACTERS);
  assert.ok(!value.includes('/'));
});

test('a Huffman-coded :authority holding the socket path is repaired with characters of the same code length', () => {
  const path = '/tmp/meshid-test/a.sock';
  const encoded = huffmanString(path);
  const block = Buffer.concat([Buffer.from([0x41]), encoded]);
  const repair = new AuthorityRepair();
  repair.repairBlock(block);
  assert.equal(repair.repaired, true);
  assert.equal(block.length, 1 + encoded.length);
  const value = authorityOf(block);
  assert.equal(value.length, path.length, 'the same decoded length keeps both dynamic tables in step');
  assert.match(value, AUTHORITY_CHARACTERS);
});

test('a valid :authority (localhost, a percent-encoded path) is left as it is', () => {
  for (const value of ['localhost', '%2Ftmp%2Fa.sock']) {
    for (const encoded of [rawString(value), huffmanString(value)]) {
      const block = Buffer.concat([Buffer.from([0x41]), encoded]);
      const before = Buffer.from(block);
      const repair = new AuthorityRepair();
      repair.repairBlock(block);
      assert.equal(repair.repaired, false, value);
      assert.deepEqual(block, before);
    }
  }
});

test('a literal naming :authority by its dynamic-table index is repaired too; other headers are not touched', () => {
  const repair = new AuthorityRepair();
  // Block 1: :authority "localhost" inserted (dynamic index 62), then x-path "/a/b" inserted (now 62; :authority 63).
  const first = Buffer.concat([Buffer.from([0x41]), rawString('localhost'), Buffer.from([0x40]), rawString('x-path'), rawString('/a/b')]);
  repair.repairBlock(first);
  assert.equal(repair.repaired, false);
  assert.equal(first.subarray(first.length - 4).toString(), '/a/b', 'a value of another header keeps its slashes');
  // Block 2: literal without indexing naming dynamic entry 63 (:authority) with a path; 4-bit prefix: 0x0f then 63-15.
  const second = Buffer.concat([Buffer.from([0x0f, 63 - 15]), rawString('/x/y')]);
  repair.repairBlock(second);
  assert.equal(repair.repaired, true);
  assert.ok(!second.subarray(3).toString('latin1').includes('/'));
});

test('client frames: the ACK of the agent\'s SETTINGS is dropped once, a padded HEADERS block split over a CONTINUATION is repaired', () => {
  const preface = CLIENT_PREFACE;
  const frame = http2Frame;
  const settings = frame(0x4, 0, 0, Buffer.alloc(0));
  const ack = frame(0x4, 0x1, 0, Buffer.alloc(0));
  const block = Buffer.concat([Buffer.from([0x83, 0x41]), rawString('/run/api.sock')]);
  // HEADERS: PADDED (2 bytes of padding) and PRIORITY, holding the first 5 bytes; CONTINUATION the rest.
  const headers = frame(0x1, 0x8 | 0x20, 1, Buffer.concat([Buffer.from([2]), Buffer.alloc(5), block.subarray(0, 5), Buffer.alloc(2)]));
  const continuation = frame(0x9, 0x4, 1, block.subarray(5));
  const ping = frame(0x6, 0, 0, Buffer.alloc(8));
  const input = Buffer.concat([preface, settings, ack, headers, continuation, ack, ping]);
  const frames = new ClientFrames();
  const out: Buffer[] = [];
  // Byte by byte: every frame boundary and string straddles reads.
  for (const byte of input) out.push(...frames.take(Buffer.from([byte])));
  const forwarded = Buffer.concat(out);
  assert.equal(frames.ackDropped, true);
  assert.equal(frames.sawRequest, true);
  assert.equal(frames.repair.repaired, true);
  assert.equal(forwarded.length, input.length - ack.length, 'one ACK dropped, the second (for Node\'s SETTINGS) kept');
  const text = forwarded.toString('latin1');
  assert.ok(!text.includes('/run/api.sock'));
  assert.ok(text.includes('-api.sock'), 'the rest of the value stays');
  assert.deepEqual(forwarded.subarray(forwarded.length - ping.length), ping);
});

test('client frames: a PING before the first request asks for an answer now, a PRIORITY or WINDOW_UPDATE does not', () => {
  const preface = CLIENT_PREFACE;
  const frame = (type: number, length: number): Buffer => {
    const bytes = Buffer.alloc(9 + length);
    bytes.writeUIntBE(length, 0, 3);
    bytes[3] = type;
    return bytes;
  };
  const quiet = new ClientFrames();
  quiet.take(Buffer.concat([preface, frame(0x4, 0), frame(0x8, 4), frame(0x2, 5)]));
  assert.equal(quiet.sawOtherFrame, false);
  assert.equal(quiet.sawRequest, false);
  const pinging = new ClientFrames();
  pinging.take(Buffer.concat([preface, frame(0x4, 0), frame(0x6, 8)]));
  assert.equal(pinging.sawOtherFrame, true);
  const notHttp2 = new ClientFrames();
  const out = notHttp2.take(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  assert.equal(notHttp2.passThrough, true);
  assert.equal(Buffer.concat(out).toString(), 'GET / HTTP/1.1\r\n\r\n', 'bytes that are not HTTP/2 go to Node as they came');
});

test('client frames: after a header block it cannot follow, the ACK of the agent\'s SETTINGS is still dropped, and then bytes pass untouched', () => {
  const preface = CLIENT_PREFACE;
  const frame = http2Frame;
  const ack = frame(0x4, 0x1, 0, Buffer.alloc(0));
  // A HEADERS without END_HEADERS interrupted by a PING: nghttp2's protocol error to report, not the relay's.
  const broken = Buffer.concat([preface, frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0, 1, Buffer.from([0x82])), frame(0x6, 0, 0, Buffer.alloc(8))]);
  const later = Buffer.concat([frame(0x1, 0x4, 3, Buffer.concat([Buffer.from([0x41]), rawString('/run/api.sock')])), ack]);
  const frames = new ClientFrames();
  const out = [...frames.take(broken)];
  assert.equal(frames.ackDropped, false);
  out.push(...frames.take(Buffer.concat([ack, later])));
  assert.equal(frames.ackDropped, true);
  assert.deepEqual(Buffer.concat(out), Buffer.concat([broken, later]), 'only the first ACK dropped, the rest as it came');
  assert.equal(frames.passThrough, true);
});

test('a literal name of the longest Huffman string a held block allows is read without spreading its symbols into a call', () => {
  // 65,450 octets of zero bits are 104,720 five-bit '0's, within the relay's 64 KiB block; spread into
  // String.fromCharCode they overflowed the stack whenever the socket's 'data' handler ran a few hundred frames deep,
  // an uncaught RangeError that ended the agent.
  const length = 65_450;
  const lengthBytes: number[] = [0x80 | 0x7f];
  for (let rest = length - 0x7f; ; rest >>= 7) {
    if (rest < 0x80) {
      lengthBytes.push(rest);
      break;
    }
    lengthBytes.push((rest & 0x7f) | 0x80);
  }
  const block = Buffer.concat([Buffer.from([0x00]), Buffer.from(lengthBytes), Buffer.alloc(length), rawString('/x')]);
  const deep = (depth: number): void => (depth === 0 ? new AuthorityRepair().repairBlock(block) : deep(depth - 1));
  assert.doesNotThrow(() => deep(2_000));
});

test('a raw :authority has every disallowed octet repaired; a Huffman-coded one only those an allowed character of the same code length can stand for', () => {
  const odd = 'C:\\run\\caf\u00e9 api.sock';
  const raw = Buffer.concat([Buffer.from([0x41]), rawString(odd)]);
  const rawRepair = new AuthorityRepair();
  rawRepair.repairBlock(raw);
  assert.equal(rawRepair.repaired, true);
  const value = authorityOf(raw);
  assert.equal(value.length, odd.length);
  assert.match(value, AUTHORITY_CHARACTERS);
  // '\' has a 19-bit code and no allowed character has one: the Huffman-coded value is left for nghttp2 to refuse.
  const coded = Buffer.concat([Buffer.from([0x41]), huffmanString(odd)]);
  const before = Buffer.from(coded);
  const codedRepair = new AuthorityRepair();
  codedRepair.repairBlock(coded);
  assert.equal(codedRepair.repaired, false);
  assert.deepEqual(coded, before);
});
