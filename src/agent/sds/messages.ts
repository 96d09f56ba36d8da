import type { AnyMessage, ProtoStruct } from '../../common/grpc/proto.js';

/**
 * The xDS messages SDS reads and writes, in the keepCase shape grpc-js hands to handlers (PROTO_CONVERSION in
 * src/common/grpc/proto.ts: proto3 defaults are absent, so every field is optional on input). Only the fields meshid
 * uses are typed; field numbers are in SPEC-NOTES §14.3–§14.5.
 */

/** envoy.config.core.v3.Node (SPEC-NOTES §14.5): what SDS reads to choose the validation-context form. */
export interface EnvoyNode {
  id?: string;
  cluster?: string;
  /** Read with fromStruct: protobufjs' bundled Value uses camelCase members. */
  metadata?: ProtoStruct;
  user_agent_name?: string;
  user_agent_build_version?: { version?: { major_number?: number; minor_number?: number; patch?: number } };
}

/** google.rpc.Status as carried in error_detail: its presence is what makes a request a NACK. */
export interface RpcStatus {
  code?: number;
  message?: string;
}

/** envoy.service.discovery.v3.DiscoveryRequest (SotW and FetchSecrets). */
export interface DiscoveryRequest {
  version_info?: string;
  node?: EnvoyNode;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: RpcStatus;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

/** envoy.service.discovery.v3.DeltaDiscoveryRequest. */
export interface DeltaDiscoveryRequest {
  node?: EnvoyNode;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: RpcStatus;
}

/** envoy.service.discovery.v3.Resource: one named, versioned secret in a delta response. */
export interface DeltaResource {
  name: string;
  version: string;
  resource: AnyMessage;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  nonce: string;
  removed_resources: string[];
}
