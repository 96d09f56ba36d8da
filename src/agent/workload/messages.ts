import type { ProtoStruct } from '../../common/grpc/proto.js';

/**
 * The SPIFFE Workload API messages (proto/workload/workload.proto; SPEC-NOTES §14.1) in the keepCase shape grpc-js
 * uses in meshid (PROTO_CONVERSION in src/common/grpc/proto.ts): field names as in the .proto, `bytes` as Buffers,
 * proto3 defaults absent on decoded messages — so every request field is optional here.
 */

/** X509SVIDRequest, X509BundlesRequest, JWTBundlesRequest: placeholders; unknown fields are ignored (§8). */
export type EmptyRequest = Record<string, never>;

export interface X509Svid {
  spiffe_id: string;
  /** Concatenated DER, leaf first, then the datacenter intermediate. */
  x509_svid: Buffer;
  /** PKCS#8 DER, unencrypted. */
  x509_svid_key: Buffer;
  /** Concatenated DER roots of the own trust domain. */
  bundle: Buffer;
  hint?: string;
}

export interface X509SvidResponse {
  /** At least one; svids[0] is the default identity. */
  svids: X509Svid[];
  crl?: Buffer[];
  /** `spiffe://<foreign td>` → concatenated DER roots. */
  federated_bundles?: Record<string, Buffer>;
}

export interface X509BundlesResponse {
  crl?: Buffer[];
  /** `spiffe://<td>` → concatenated DER roots; the own trust domain is always present. */
  bundles: Record<string, Buffer>;
}

export interface JwtSvidRequest {
  audience?: string[];
  spiffe_id?: string;
}

export interface JwtSvid {
  spiffe_id: string;
  svid: string;
  hint?: string;
}

export interface JwtSvidResponse {
  svids: JwtSvid[];
}

export interface JwtBundlesResponse {
  /** `spiffe://<td>` → UTF-8 JSON of an RFC 7517 JWK Set. */
  bundles: Record<string, Buffer>;
}

export interface ValidateJwtSvidRequest {
  /** Singular, unlike JWTSVIDRequest. */
  audience?: string;
  svid?: string;
}

export interface ValidateJwtSvidResponse {
  spiffe_id: string;
  /** Built with toStruct: protobufjs' bundled Value type uses camelCase members (stringValue, listValue, …). */
  claims: ProtoStruct;
}
