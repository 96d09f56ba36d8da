import type { ServiceDefinition } from '@grpc/grpc-js';
import { serializeEachObjectOnce, withResponseSerializers } from '../../common/grpc/service.js';

/**
 * An xDS response as a body shared between streams plus the one field that is the stream's own: the nonce. A
 * rotation watched by a thousand StreamSecrets streams of one workload sends the same version, resources and type
 * URL on each; the body (a few KB of PEM) is protobuf-encoded once, and each stream only appends its nonce.
 */
export class NoncedResponse {
  constructor(
    /** Every field but the nonce; the same object for every stream in the same state. */
    readonly body: object,
    readonly nonce: string,
  ) {}
}

/** The nonce's field number in both DiscoveryResponse and DeltaDiscoveryResponse (SPEC-NOTES §14.3–§14.4). */
const NONCE_FIELD = 5;

/**
 * How many nonces' bytes are kept per body. The streams of a push mostly send the same body under the same nonce
 * (each counts its own nonces, from the same start when they connected together), so the bytes are made once per
 * body and nonce, not once per stream: 1,000 streams' copies of a ~2 KB body were ~1,000 fresh pages of Buffer pool
 * per push, which fault in again after every trim of the native heap (bench/HISTORY.md, the forty-third session).
 * A few, for streams whose counts have drifted apart; the map lives as long as its body.
 */
const NONCES_KEPT = 4;

/**
 * Response serializers for `methods` that encode a NoncedResponse's body once per body object and append the nonce
 * field. Valid protobuf: a parser accepts fields in any order, and the body never carries a nonce of its own. Any
 * other response is serialized as before. The bytes of a body and nonce are shared by the streams that send them,
 * as serializeEachObjectOnce's are: grpc-js copies a response into its own frame and writes nothing into it.
 */
export function encodeSharedBodies(definition: ServiceDefinition, methods: readonly string[]): ServiceDefinition {
  return withResponseSerializers(definition, methods, (serialize) => {
    const body = serializeEachObjectOnce(serialize);
    const byBody = new WeakMap<object, Map<string, Buffer>>();
    return (value: unknown): Buffer => {
      if (!(value instanceof NoncedResponse)) return serialize(value);
      let byNonce = byBody.get(value.body);
      if (byNonce === undefined) byBody.set(value.body, (byNonce = new Map()));
      let bytes = byNonce.get(value.nonce);
      if (bytes === undefined) {
        bytes = withStringField(body(value.body), NONCE_FIELD, value.nonce);
        if (byNonce.size >= NONCES_KEPT) byNonce.delete(byNonce.keys().next().value as string);
        byNonce.set(value.nonce, bytes);
      }
      return bytes;
    };
  });
}

/**
 * `prefix` followed by a length-delimited string field, in one allocation: this runs once per stream and push, and
 * a thousand streams' worth of intermediate buffers is what made the first push after an idle period slow (P3).
 */
function withStringField(prefix: Buffer, field: number, text: string): Buffer {
  const length = Buffer.byteLength(text, 'utf8');
  if (length === 0) return Buffer.from(prefix); // proto3 leaves an empty string out
  let varintBytes = 1;
  for (let n = length; n >= 0x80; n >>>= 7) varintBytes++;
  const out = Buffer.allocUnsafe(prefix.length + 1 + varintBytes + length);
  let at = prefix.copy(out, 0);
  out[at++] = (field << 3) | 2;
  for (let n = length; ; n >>>= 7) {
    if (n < 0x80) {
      out[at++] = n;
      break;
    }
    out[at++] = (n & 0x7f) | 0x80;
  }
  out.write(text, at, 'utf8');
  return out;
}
