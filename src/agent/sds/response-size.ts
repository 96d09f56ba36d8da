import type { AnyMessage } from '../../common/grpc/proto.js';

/**
 * How much of a DeltaDiscoveryResponse its resources and removed names may take before the rest goes in the next
 * response. gRPC clients refuse a message over 4 MiB unless configured otherwise (grpc-go, grpc-java, grpc-js and
 * C-core, so Envoy's `google_grpc` SDS client; `envoy_grpc` takes any size by default), and refuse it after it has
 * been sent: the client's stream fails RESOURCE_EXHAUSTED, it reconnects, asks for the same names and gets the same
 * message, for ever. At ~1.9 KB a P-256 SVID secret, a wildcard subscription of a workload with ~2,200 identities
 * passed 4 MiB in one answer (3,005 secrets: 5.98 MB). Delta lets a server send resources in as many responses as it
 * likes, each ACKed on its own, so a response stops here, well under the limit; a single secret over it still goes
 * alone (a validation context of huge federated bundles: nothing smaller can carry it).
 */
export const DELTA_RESPONSE_BYTES = 1024 * 1024;

function varintBytes(n: number): number {
  let bytes = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) bytes++;
  return bytes;
}

/** A length-delimited field of `length` bytes, tag included (field numbers below 16 take one tag byte). */
function fieldBytes(length: number): number {
  return 1 + varintBytes(length) + length;
}

function anyBytes(any: AnyMessage): number {
  return fieldBytes(Buffer.byteLength(any.type_url, 'utf8')) + fieldBytes(any.value.length);
}

/** The bytes one Resource {name, version, resource} adds to a DeltaDiscoveryResponse's `resources`. */
export function deltaResourceBytes(name: string, version: string, resource: AnyMessage): number {
  return fieldBytes(fieldBytes(Buffer.byteLength(name, 'utf8')) + fieldBytes(Buffer.byteLength(version, 'utf8')) + fieldBytes(anyBytes(resource)));
}

/** The bytes one name adds to a DeltaDiscoveryResponse's `removed_resources`. */
export function removedNameBytes(name: string): number {
  return fieldBytes(Buffer.byteLength(name, 'utf8'));
}
