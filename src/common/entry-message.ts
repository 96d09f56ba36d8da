/**
 * meshid.v1.Entry and Selector (proto/meshid/v1/types.proto) as @grpc/proto-loader delivers them (keepCase, longs
 * as Number, defaults absent): what the server sends on the agent API and the admin API, and what the agent stores.
 */
export interface SelectorMessage {
  type?: string;
  value?: string;
}

export interface EntryMessage {
  id?: string;
  spiffe_id?: string;
  parent_id?: string;
  selectors?: SelectorMessage[];
  x509_svid_ttl?: number;
  jwt_svid_ttl?: number;
  dns_names?: string[];
  hint?: string;
  federates_with?: string[];
  admin?: boolean;
  downstream?: boolean;
  revision?: number;
  /** Epoch seconds. */
  created_at?: number;
  /** Epoch milliseconds (absent from servers and stored states before it existed). */
  created_at_ms?: number;
}
