/**
 * The shapes of meshid's own proto messages as @grpc/proto-loader delivers them (keepCase, longs as Number,
 * bytes as Buffer). Hand-written to match proto/meshid/v1/*.proto; only what the code reads or writes.
 * test/unit/proto/hand-written-types.test.ts checks them, and the other hand-written message shapes, against proto/.
 */
import type { EntryMessage, SelectorMessage } from '../../common/entry-message.js';

export type ProtoSelector = SelectorMessage;
export type ProtoEntry = EntryMessage;

export interface ProtoJwtKey {
  kid?: string;
  public_key?: Buffer;
  expires_at?: number;
}

export interface ProtoBundle {
  trust_domain?: string;
  x509_authorities?: Buffer[];
  jwt_authorities?: ProtoJwtKey[];
  sequence?: number;
  refresh_hint?: number;
}

export interface ProtoAgent {
  spiffe_id?: string;
  datacenter?: string;
  selectors?: ProtoSelector[];
  cert_serial?: string;
  cert_expires_at?: number;
  banned?: boolean;
  attested_at?: number;
  cert_issuer_id?: string;
  agent_version?: string;
}

export interface ProtoBatchStatus {
  code: number;
  message: string;
}
