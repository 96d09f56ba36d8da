/**
 * Request and response shapes of meshid.admin.v1 (proto/meshid/v1/admin.proto) as the CLI sends and receives them
 * through proto-loader (keepCase, longs as Number, bytes as Buffer, proto3 defaults absent). The shared message
 * types (Entry, Bundle, Agent, Selector) are the server's own in ../api/proto-types.ts.
 */
import type { ProtoAgent, ProtoBatchStatus, ProtoBundle, ProtoEntry, ProtoSelector } from '../api/proto-types.js';

export type { ProtoAgent, ProtoBatchStatus, ProtoBundle, ProtoEntry, ProtoSelector };

export interface ListEntriesRequest {
  spiffe_id?: string;
  parent_id?: string;
  selectors?: ProtoSelector[];
  selector_match?: string;
  federates_with?: string;
  federates_with_list?: string[];
  federates_with_match?: string;
  hint?: string;
  downstream?: boolean;
  page_size?: number;
  page_token?: string;
}

export interface CreateEntriesResponse {
  results?: Array<{ status?: Partial<ProtoBatchStatus>; entry?: ProtoEntry }>;
}

export interface DeleteEntriesResponse {
  results?: Array<{ id?: string; status?: Partial<ProtoBatchStatus> }>;
}

export interface GenerateJoinTokenResponse {
  token?: string;
  expires_at?: number;
  datacenter?: string;
}

export interface ProtoAuthority {
  id?: string;
  kind?: string;
  datacenter?: string;
  state?: string;
  not_before?: number;
  not_after?: number;
  fingerprint?: string;
  subject?: string;
  upstream_ca?: boolean;
  activates_at?: number;
}

/** RotateRoot's answer: the root, and whether this call prepared it (unset from servers that predate the field). */
export interface ProtoRotatedRoot extends ProtoAuthority {
  newly_prepared?: boolean;
}

export interface ProtoRevokedRoot {
  id?: string;
  subject?: string;
  fingerprint?: string;
  revoked_at?: number;
  anchors?: Array<{ subject?: string; fingerprint?: string }>;
}

export interface ProtoRevokedJwtKey {
  id?: string;
  key_id?: string;
  revoked_at?: number;
}

/** meshid.admin.v1.ListAuthoritiesResponse: the CA journal, which TaintAuthority and RevokeAuthority answer with too. */
export interface ListAuthoritiesResponse {
  trust_domain?: string;
  authorities?: ProtoAuthority[];
  revoked_roots?: ProtoRevokedRoot[];
  /** Absent from servers that predate it (and from those that never revoked a JWT key). */
  revoked_jwt_keys?: ProtoRevokedJwtKey[];
}

export interface MintX509SvidResponse {
  svid_chain?: Buffer[];
  root_cas?: Buffer[];
  expires_at?: number;
}

export interface ProtoFederationRelationship {
  trust_domain?: string;
  bundle_endpoint_url?: string;
  bundle_endpoint_profile?: string;
  endpoint_spiffe_id?: string;
  last_attempt_at?: number;
  last_success_at?: number;
  last_error?: string;
  next_poll_at?: number;
  source?: string;
}

/** meshid.admin.v1.LoggerLevels: the server's log level now, and the one it started with. */
export interface LoggerLevels {
  current_level?: string;
  launch_level?: string;
}

export interface WriteBackupResponse {
  dir?: string;
  files?: Array<{ path?: string; size?: number }>;
  datastore_size?: number;
  ca_keys?: number;
  taken_at?: number;
  took_ms?: number;
}

/** Every admin method the CLI calls: [request, response] by service and method name. */
export interface AdminMethods {
  Entries: {
    CreateEntries: [{ entries: ProtoEntry[] }, CreateEntriesResponse];
    ListEntries: [ListEntriesRequest, { entries?: ProtoEntry[]; next_page_token?: string }];
    GetEntry: [{ id: string }, ProtoEntry];
    UpdateEntry: [{ entry: ProtoEntry; mask: string[] }, ProtoEntry];
    DeleteEntries: [{ ids: string[] }, DeleteEntriesResponse];
  };
  Tokens: {
    GenerateJoinToken: [{ datacenter?: string; ttl?: number; selectors?: ProtoSelector[] }, GenerateJoinTokenResponse];
    RevokeJoinToken: [{ token: string }, { datacenter?: string; expires_at?: number }];
    RevokeAllJoinTokens: [Record<string, never>, { revoked?: number }];
  };
  Bundles: {
    GetBundle: [Record<string, never>, ProtoBundle];
    ListFederatedBundles: [Record<string, never>, { bundles?: ProtoBundle[] }];
    SetFederatedBundle: [{ trust_domain: string; bundle: string; format?: string }, ProtoBundle];
    DeleteFederatedBundle: [{ trust_domain: string; mode?: string }, { dissociated_entries?: number }];
  };
  Agents: {
    ListAgents: [{ datacenter?: string }, { agents?: ProtoAgent[] }];
    GetAgent: [{ spiffe_id: string }, ProtoAgent];
    EvictAgent: [{ spiffe_id: string }, ProtoAgent];
    BanAgent: [{ spiffe_id: string }, ProtoAgent];
  };
  Authorities: {
    ListAuthorities: [Record<string, never>, ListAuthoritiesResponse];
    RotateRoot: [Record<string, never>, ProtoRotatedRoot];
    ActivateRoot: [{ id: string }, { root?: ProtoAuthority; already_active?: boolean }];
    TaintAuthority: [{ id: string }, ListAuthoritiesResponse];
    RevokeAuthority: [{ id: string; ids?: string[]; force?: boolean }, ListAuthoritiesResponse];
  };
  Svids: {
    MintX509Svid: [{ csr: Buffer; spiffe_id: string; ttl?: number; dns_names?: string[]; datacenter?: string }, MintX509SvidResponse];
    MintJwtSvid: [{ spiffe_id: string; audience: string[]; ttl?: number }, { token?: string; expires_at?: number }];
  };
  Federation: {
    ListFederationRelationships: [Record<string, never>, { relationships?: ProtoFederationRelationship[] }];
    GetFederationRelationship: [{ trust_domain: string }, ProtoFederationRelationship];
    CreateFederationRelationship: [{ relationship: ProtoFederationRelationship; bundle?: string; bundle_format?: string }, ProtoFederationRelationship];
    UpdateFederationRelationship: [{ relationship: ProtoFederationRelationship; bundle?: string; bundle_format?: string }, ProtoFederationRelationship];
    DeleteFederationRelationship: [{ trust_domain: string }, ProtoFederationRelationship];
    RefreshBundle: [{ trust_domain: string }, ProtoFederationRelationship];
  };
  Backups: {
    WriteBackup: [{ dir: string }, WriteBackupResponse];
  };
  Logger: {
    GetLogger: [Record<string, never>, LoggerLevels];
    SetLogLevel: [{ level: string }, LoggerLevels];
    ResetLogLevel: [Record<string, never>, LoggerLevels];
  };
  Health: {
    Check: [{ service?: string }, { status?: string }];
  };
}

export type AdminService = keyof AdminMethods;
