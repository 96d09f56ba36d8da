/**
 * A StreamSecrets stream as a load generator: it behaves like Envoy (first request with the node, an ACK for every
 * response carrying its version and nonce) but does as little as possible in JavaScript — it reads only
 * version_info and nonce from each response and never decodes the Secrets — so that in P3 the time measured is
 * the agent's, not that of 1,000 Envoys emulated in one Node process on the same two cores.
 */
import * as grpc from '@grpc/grpc-js';
import { protoRoot } from '../src/common/grpc/proto.js';

const STREAM_SECRETS = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';
const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const DiscoveryRequest = protoRoot('envoy/service/discovery/v3/discovery.proto').lookupType('envoy.service.discovery.v3.DiscoveryRequest');

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

export class SidecarStream {
  /** version_info of the last response. */
  version = '';
  private readonly call: grpc.ClientDuplexStream<Record<string, unknown>, Head>;
  private waiter: ((arrivedAt: number) => void) | undefined;

  constructor(client: grpc.Client, id: string, private readonly names: string[]) {
    this.call = client.makeBidiStreamRequest(STREAM_SECRETS, (m: Record<string, unknown>) => Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromObject(m)).finish()), readHead);
    this.call.on('data', (r: Head) => {
      this.call.write({ resource_names: this.names, type_url: SECRET_TYPE_URL, version_info: r.version, response_nonce: r.nonce });
      if (r.version === this.version) return;
      this.version = r.version;
      const w = this.waiter;
      this.waiter = undefined;
      w?.(performance.now());
    });
    this.call.on('error', () => undefined);
    this.call.write({ node: { id, cluster: 'bench' }, resource_names: names, type_url: SECRET_TYPE_URL });
  }

  /** Resolves with performance.now() when a response with a new version_info arrives. */
  nextVersion(): Promise<number> {
    return new Promise((resolve) => (this.waiter = resolve));
  }

  cancel(): void {
    this.call.cancel();
  }
}
