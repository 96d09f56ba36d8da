import type net from 'node:net';
import { Duplex } from 'node:stream';
import { AuthorityRepair } from './hpack-authority.js';

/**
 * Hands an accepted connection to Node's HTTP/2 server either as it is or, for a client whose `:authority` nghttp2
 * would refuse (grpc-java, so java-spiffe, sends the socket's path; hpack-authority.ts), through a relay that repairs
 * its header blocks. The first request decides, so every other client keeps the native socket (no JavaScript per
 * frame, and UidFairQueue's handle-level pausing). gRPC clients send no request before the server's SETTINGS, so the
 * agent sends an empty SETTINGS frame itself (a valid server preface; Node's own follows as a second one) and drops
 * the client's ACK of it, which nghttp2 never asked for. A connection whose ACK has not come by the decision goes
 * through the relay too, since only the relay can still drop it.
 */

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_LENGTH = 9;
const HEADERS = 0x1;
const PRIORITY_FRAME = 0x2;
const SETTINGS = 0x4;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;
/** SETTINGS_MAX_FRAME_SIZE's initial value, which Node's server keeps: a longer frame is nghttp2's to refuse. */
const MAX_FRAME_LENGTH = 16_384;
/** A header block held for repair; grpc-js refuses metadata far below this. */
const MAX_BLOCK_BYTES = 64 * 1024;
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
/** After the client's ACK, how long its first request may take before the connection goes to Node as it is. */
export const FIRST_REQUEST_WAIT_MS = 5000;
/** A client that has not even acknowledged the SETTINGS by then gets Node's server as it is. */
export const ACK_WAIT_MS = 10_000;
/**
 * Bytes read before deciding; a client sending this much without a request gets Node's server as it is. Small,
 * because a uid may hold max_connections_per_uid connections in this state.
 */
const MAX_PEEK_BYTES = 64 * 1024;

/** The client-to-server byte stream, frame by frame: header blocks repaired, the ACK of the agent's SETTINGS dropped. */
export class ClientFrames {
  readonly repair = new AuthorityRepair();
  private pending: Buffer = Buffer.alloc(0);
  private prefaceRead = false;
  private block: Buffer[] = [];
  private blockBytes = 0;
  /** Once set, bytes pass through untouched: nghttp2 fails the connection for whatever this could not follow. */
  passThrough = false;
  /** Not HTTP/2 (no client preface): no ACK will come, and nothing is to be repaired. */
  notHttp2 = false;
  /**
   * Set after a header block this could not follow: blocks pass as they came from then on, but frames are still
   * followed until the ACK is dropped, which nghttp2 would otherwise take for the ACK of its own SETTINGS and then fail
   * the connection on the real one.
   */
  hpackLost = false;
  ackDropped = false;
  sawRequest = false;
  /** A frame other than SETTINGS, WINDOW_UPDATE and PRIORITY, such as a PING, which someone must answer now. */
  sawOtherFrame = false;

  /** Takes bytes read from the client; returns those ready for the server, in order. */
  take(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    if (!this.prefaceRead && !this.passThrough) {
      const head = this.pending.subarray(0, PREFACE.length);
      if (!PREFACE.subarray(0, head.length).equals(head)) {
        this.passThrough = true;
        this.notHttp2 = true;
      } else if (head.length === PREFACE.length) {
        out.push(head);
        this.pending = this.pending.subarray(PREFACE.length);
        this.prefaceRead = true;
      }
    }
    while (!this.passThrough && this.prefaceRead && this.pending.length >= FRAME_HEADER_LENGTH) {
      const length = this.pending.readUIntBE(0, 3);
      if (length > MAX_FRAME_LENGTH) {
        this.passThrough = true;
        break;
      }
      if (this.pending.length < FRAME_HEADER_LENGTH + length) break;
      const frame = this.pending.subarray(0, FRAME_HEADER_LENGTH + length);
      this.pending = this.pending.subarray(frame.length);
      out.push(...this.frame(frame));
      if (this.hpackLost && this.ackDropped) this.passThrough = true;
    }
    if (this.passThrough) out.push(...this.release());
    return out;
  }

  /** Everything held, as it came: for handing the connection over unrepaired. */
  release(): Buffer[] {
    const held = [...this.block, this.pending].filter((b) => b.length > 0);
    this.block = [];
    this.blockBytes = 0;
    this.pending = Buffer.alloc(0);
    return held;
  }

  private frame(frame: Buffer): Buffer[] {
    const type = frame[3]!;
    const flags = frame[4]!;
    if (type === SETTINGS && (flags & ACK) !== 0 && !this.ackDropped) {
      this.ackDropped = true;
      return [];
    }
    if (type !== HEADERS && type !== CONTINUATION) {
      if (type !== SETTINGS && type !== WINDOW_UPDATE && type !== PRIORITY_FRAME) this.sawOtherFrame = true;
      // A frame inside a header block is nghttp2's protocol error to report; the block goes on as it came.
      return [...this.abandonBlock(), frame];
    }
    if (this.hpackLost) return [frame];
    this.block.push(frame);
    this.blockBytes += frame.length;
    if (this.blockBytes > MAX_BLOCK_BYTES) return this.abandonBlock();
    if ((flags & END_HEADERS) === 0) return [];
    this.sawRequest = true;
    const frames = this.block;
    this.block = [];
    this.blockBytes = 0;
    this.repairBlock(frames);
    return frames;
  }

  /** A block this cannot follow leaves the HPACK state unknown from here on. */
  private abandonBlock(): Buffer[] {
    if (this.block.length === 0) return [];
    this.hpackLost = true;
    const frames = this.block;
    this.block = [];
    this.blockBytes = 0;
    return frames;
  }

  private repairBlock(frames: Buffer[]): void {
    const fragments: Buffer[] = [];
    for (const frame of frames) {
      let start = FRAME_HEADER_LENGTH;
      let end = frame.length;
      if (frame[3] === HEADERS) {
        const flags = frame[4]!;
        if ((flags & PADDED) !== 0) {
          end -= frame[start] ?? 0;
          start += 1;
        }
        if ((flags & PRIORITY_FLAG) !== 0) start += 5;
      }
      if (start > end) {
        this.hpackLost = true;
        return;
      }
      fragments.push(frame.subarray(start, end));
    }
    const block = Buffer.concat(fragments);
    this.repair.repairBlock(block);
    let offset = 0;
    for (const fragment of fragments) {
      block.copy(fragment, 0, offset, offset + fragment.length);
      offset += fragment.length;
    }
  }
}

/**
 * Reads `socket`'s first request, then calls `handOver` with the socket itself (its bytes pushed back) or with a
 * relay that repairs every later header block. `socket` needs its close handling set up already. `readingPaused`
 * says whether the caller wants the socket's reading stopped (UidFairQueue): the waits then start over, because the
 * client's bytes may be waiting in the kernel, unread. Until the hand-over, and for a socket handed over as it is,
 * the caller stops and starts reading at the socket's handle. A relayed socket's reading is the relay's alone: it is
 * handed over with `readingChanged`, which the caller calls instead whenever readingPaused()'s answer changes, and
 * the caller must start the handle again if it stopped it (relay()).
 */
export function handOverAfterFirstRequest(
  socket: net.Socket,
  handOver: (connection: net.Socket | Duplex, readingChanged?: () => void) => void,
  readingPaused: () => boolean = () => false,
): void {
  const frames = new ClientFrames();
  let read: Buffer[] = [];
  let readBytes = 0;
  let decided = false;
  let waitingForRequest = false;
  let timer: NodeJS.Timeout | undefined;
  const wait = (ms: number): void => {
    clearTimeout(timer);
    timer = setTimeout(() => (readingPaused() ? wait(ms) : decide()), ms);
  };
  wait(ACK_WAIT_MS);
  const ignoreError = (): void => {};
  const decide = (): void => {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    socket.off('error', ignoreError);
    if (socket.destroyed) return;
    // The 'close' listener keeps this scope for the connection's life: the bytes read must not stay in it.
    const held = read;
    read = [];
    // Before the client's ACK of the agent's SETTINGS (a client may send a whole first request before reading the
    // server's preface, RFC 7540 §3.5, or stay silent), only the relay can still drop it.
    if (!frames.repair.repaired && (frames.ackDropped || frames.notHttp2)) {
      const bytes = [...held, ...frames.release()];
      if (bytes.length > 0) socket.unshift(Buffer.concat(bytes));
      handOver(socket);
      return;
    }
    const relayed = relay(socket, frames, held, readingPaused);
    handOver(relayed.stream, relayed.readingChanged);
  };
  const onData = (chunk: Buffer): void => {
    const ready = frames.take(chunk);
    read.push(...ready);
    readBytes += chunk.length;
    if (frames.passThrough || frames.hpackLost || readBytes > MAX_PEEK_BYTES) return decide();
    if (!frames.ackDropped) return;
    if (frames.sawRequest || frames.sawOtherFrame) return decide();
    if (!waitingForRequest) {
      waitingForRequest = true;
      wait(FIRST_REQUEST_WAIT_MS);
    }
  };
  // Until Node's server has the socket, an error (a reset by the client) would be thrown with no one listening.
  socket.on('error', ignoreError);
  socket.once('close', () => {
    clearTimeout(timer);
    read = [];
  });
  socket.on('data', onData);
  socket.write(EMPTY_SETTINGS);
}

/**
 * The relay reads the socket while both its reader (grpc-js's session) wants bytes and readingPaused() is false, and
 * stops and starts it with net.Socket's pause() and resume() alone, which keep Node's record of whether the handle is
 * reading true. A handle stopped or started behind Node's back while Node had stopped it itself (the relay's reader
 * not reading) let the next resume() start it twice: libuv's EALREADY, and Node destroyed the connection. With
 * pause() the socket still reads up to its high-water mark before its handle stops; a bounded amount.
 */
function relay(socket: net.Socket, frames: ClientFrames, read: Buffer[], readingPaused: () => boolean): { stream: Duplex; readingChanged: () => void } {
  let wanted = true;
  const readingChanged = (): void => {
    if (socket.destroyed) return;
    if (wanted && !readingPaused()) socket.resume();
    else socket.pause();
  };
  const relay = new Duplex({
    read() {
      wanted = true;
      readingChanged();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      socket.destroy();
      callback(err);
    },
  });
  for (const bytes of read) relay.push(bytes);
  socket.on('data', (chunk: Buffer) => {
    for (const bytes of frames.take(chunk)) {
      if (!relay.push(bytes)) {
        wanted = false;
        readingChanged();
      }
    }
  });
  socket.on('end', () => relay.push(null));
  socket.on('error', (err) => relay.destroy(err));
  socket.on('close', () => relay.destroy());
  readingChanged();
  return { stream: relay, readingChanged };
}
