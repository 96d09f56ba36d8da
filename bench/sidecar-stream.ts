/**
 * StreamSecrets streams as a load generator: they behave like Envoy (first request with the node, an ACK for every
 * response carrying its version and nonce) but do as little as possible in JavaScript — plain node:http2 with gRPC's
 * five-byte message framing instead of grpc-js's call stack, and only version_info and nonce read from each
 * response, never the Secrets — so that in P3 the time measured is the agent's, not that of 1,000 Envoys emulated in
 * one Node process on the same two cores.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { protoRoot } from '../src/common/grpc/proto.js';

const STREAM_SECRETS = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';
const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const DiscoveryRequest = protoRoot('envoy/service/discovery/v3/discovery.proto').lookupType('envoy.service.discovery.v3.DiscoveryRequest');

/** One HTTP/2 connection to the agent's Unix socket, carrying many streams (as grpc-js would multiplex them). */
export function connectSidecars(socketPath: string): http2.ClientHttp2Session {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined);
  return session;
}

interface Head {
  version: string;
  nonce: string;
}

/** DiscoveryResponse fields 1 (version_info) and 5 (nonce), skipping everything else on the wire. */
function readHead(buf: Buffer): Head {
  const head = { version: '', nonce: '' };
  let at = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[at++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  while (at < buf.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const len = varint();
      const field = Math.floor(key / 8);
      if (field === 1) head.version = buf.toString('utf8', at, at + len);
      else if (field === 5) head.nonce = buf.toString('utf8', at, at + len);
      at += len;
    } else throw new Error(`unexpected wire type ${wire} in a DiscoveryResponse`);
  }
  return head;
}

/** A gRPC length-prefixed message (uncompressed). */
/** A current Envoy's build version: with it the agent answers with the SPIFFE validator, as real sidecars get. */
const ENVOY_BUILD = { version: { major_number: 1, minor_number: 31, patch: 2 } };

function frame(message: Record<string, unknown>): Buffer {
  const body = DiscoveryRequest.encode(DiscoveryRequest.fromObject(message)).finish();
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

export class SidecarStream {
  /** version_info of the last response. */
  version = '';
  /** Size of the last response's message (without gRPC's 5-byte frame header). */
  lastBytes = 0;
  private readonly stream: http2.ClientHttp2Stream;
  private waiter: ((arrivedAt: number) => void) | undefined;
  private pending: Buffer = Buffer.alloc(0);

  constructor(session: http2.ClientHttp2Session, id: string, private readonly names: string[]) {
    this.stream = session.request({ ':method': 'POST', ':path': STREAM_SECRETS, 'content-type': 'application/grpc', te: 'trailers' });
    this.stream.on('data', (chunk: Buffer) => this.receive(chunk));
    this.stream.on('error', () => undefined);
    this.stream.write(frame({ node: { id, cluster: 'bench', user_agent_name: 'envoy', user_agent_build_version: ENVOY_BUILD }, resource_names: names, type_url: SECRET_TYPE_URL }));
  }

  /** Resolves with performance.now() when a response with a new version_info arrives. */
  nextVersion(): Promise<number> {
    return new Promise((resolve) => (this.waiter = resolve));
  }

  cancel(): void {
    this.stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  private receive(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 5) {
      const length = this.pending.readUInt32BE(1);
      if (this.pending.length < 5 + length) return;
      const r = readHead(this.pending.subarray(5, 5 + length));
      this.lastBytes = length;
      this.pending = this.pending.subarray(5 + length);
      this.stream.write(frame({ resource_names: this.names, type_url: SECRET_TYPE_URL, version_info: r.version, response_nonce: r.nonce }));
      if (r.version === this.version) continue;
      this.version = r.version;
      const w = this.waiter;
      this.waiter = undefined;
      w?.(performance.now());
    }
  }
}
