import type { Metadata } from '@grpc/grpc-js';
import { invalidArgument, type MeshidError } from '../../common/errors.js';

/** The Workload API's security metadata key and its only accepted value (SPEC-NOTES §1, §7). */
export const SECURITY_HEADER = 'workload.spiffe.io';
export const SECURITY_HEADER_VALUE = 'true';

/** The path prefix of every Workload API method: the service has no proto package (SPEC-NOTES §1, §13). */
export const WORKLOAD_API_PATH_PREFIX = '/SpiffeWorkloadAPI/';

/**
 * Checks the `workload.spiffe.io` security header (WL-Endpoint §3, §6, App. A; SPEC-NOTES §7): exactly one value,
 * exactly `true` (case-sensitive; `True`, `1`, empty, `true ` fail). The header exists to stop SSRF — a request
 * forged through an HTTP proxy cannot add it — so a missing or wrong header is the client's mistake, never retried:
 * MeshidError invalid_argument. Two values are refused as SPIRE refuses them (the spec is silent).
 * `workload.spiffe.io-bin` is a different key and does not count.
 */
export function checkSecurityHeader(metadata: Metadata): void {
  const values = metadata.get(SECURITY_HEADER);
  if (values.length === 0) throw invalidArgument(`security header missing from request: metadata "${SECURITY_HEADER}: ${SECURITY_HEADER_VALUE}" is required`);
  if (values.length > 1) throw sentMoreThanOnce(values.length);
  // grpc-js decodes text metadata as strings; a Buffer could only come from a -bin key, which this is not.
  const value = values[0];
  if (value === SECURITY_HEADER_VALUE) return;
  // Node's HTTP/2 server joins the values of a header sent twice into one, comma-separated (RFC 9110 §5.3), so a
  // client that added it twice reaches here with one value, "true, true": "must be exactly" would send it looking at
  // a value it never wrote.
  if (typeof value === 'string' && value.includes(',')) throw sentMoreThanOnce(value.split(',').length);
  throw invalidArgument(`security header "${SECURITY_HEADER}" must be exactly "${SECURITY_HEADER_VALUE}"`);
}

function sentMoreThanOnce(count: number): MeshidError {
  return invalidArgument(`security header "${SECURITY_HEADER}" must be sent exactly once, with the value "${SECURITY_HEADER_VALUE}"; it arrived with ${count} values`);
}
