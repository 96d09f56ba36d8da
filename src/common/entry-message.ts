import type { Selector } from './spiffe/selector.js';

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

/** What an entry is, on either side: the server's stored entry and the agent's cached one both have these fields. */
export interface EntryFields {
  readonly id: string;
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: readonly Selector[];
  readonly x509SvidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  readonly dnsNames: readonly string[];
  readonly hint: string;
  /** Bare trust domain names. */
  readonly federatesWith: readonly string[];
  readonly admin: boolean;
  readonly downstream: boolean;
  readonly revision: number;
}

/**
 * An entry as meshid.v1.Entry. `createdAtExact`: whether its creation time is known to the millisecond (the server's
 * always is; the agent's not when a server or stored state sent whole seconds), else created_at_ms is left out: a
 * time made from seconds must never be passed off as milliseconds. The arrays are copies: the message never shares
 * an array with the entry it came from.
 */
export function entryToEntryMessage(e: EntryFields, createdAt: number, createdAtExact: boolean): EntryMessage {
  const message: EntryMessage = {
    id: e.id,
    spiffe_id: e.spiffeId,
    parent_id: e.parentId,
    selectors: e.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509_svid_ttl: e.x509SvidTtlSeconds,
    jwt_svid_ttl: e.jwtSvidTtlSeconds,
    dns_names: [...e.dnsNames],
    hint: e.hint,
    federates_with: [...e.federatesWith],
    admin: e.admin,
    downstream: e.downstream,
    revision: e.revision,
    created_at: Math.floor(createdAt / 1000),
  };
  if (createdAtExact) message.created_at_ms = createdAt;
  return message;
}
