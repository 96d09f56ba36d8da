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
 * Response serializers for `methods` that encode a NoncedResponse's body once per body object and append the nonce
 * field. Valid protobuf: a parser accepts fields in any order, and the body never carries a nonce of its own. Any
 * other response is serialized as before. Every call returns a buffer of its own, so the shared body is never handed
 * out mutable.
 */
export function encodeSharedBodies(definition: ServiceDefinition, methods: readonly string[]): ServiceDefinition {
  return withResponseSerializers(definition, methods, (serialize) => {
    const body = serializeEachObjectOnce(serialize);
    return (value: unknown): Buffer =>
      value instanceof NoncedResponse ? withStringField(body(value.body), NONCE_FIELD, value.nonce) : serialize(value);
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
