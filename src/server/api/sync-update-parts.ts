import type { ProtoBundle, ProtoEntry } from './proto-types.js';

/**
 * The most bytes one Sync message carries by the estimates below: its entries and removals, with the bundles on the
 * first and the tainted set on each (a first message whose bundles alone are more carries no entries). gRPC clients
 * take messages of up to 4 MiB unless configured otherwise (meshid-agent's channel, and every agent built before this
 * split, keep that default), and an agent's entries add up past it well before the agent API's other bounds: ~450
 * bytes an entry with Kubernetes-style IDs and selectors, so ~9,400 entries, or some thirty entries of 128 long
 * selectors. One message over it is refused by the agent (RESOURCE_EXHAUSTED, "Received message larger than max"),
 * which reconnects and is sent the same message again: it never syncs, and no deletion reaches it. A quarter of the
 * limit leaves room for the estimate's slack, while a first sync of 10,000 such entries still takes only five messages.
 */
export const SYNC_MESSAGE_ENTRY_BYTES = 1024 * 1024;

/** meshid.agent.v1.SyncUpdate (proto/meshid/v1/agent.proto) as the server writes it. */
export interface SyncUpdate {
  revision: number;
  initial: boolean;
  entries: ProtoEntry[];
  removed_entry_ids: string[];
  bundle?: ProtoBundle;
  federated_bundles: ProtoBundle[];
  federated_bundles_changed: boolean;
  tainted_authority_ids: string[];
}

/** What one push of a Sync stream brings its agent. */
export interface SyncPush {
  revision: number;
  /** The stream's first push: the agent is in sync once it has it all. */
  initial: boolean;
  entries: ProtoEntry[];
  removed: string[];
  /** The own bundle, when it changed (always on the first push). */
  bundle: ProtoBundle | undefined;
  /** The complete set of federated bundles, when it changed. */
  federatedBundles: ProtoBundle[] | undefined;
  /** The complete tainted set, in every message. */
  tainted: string[];
}

/**
 * A push as its messages. The bundles ride on the first, counted in its bytes (a partner's may be megabytes), so the
 * agent verifies the SVIDs of the entries that follow against them; `initial` only on the last, as the agent is in
 * sync once it has them all (an agent of any version applies the others as changes). The tainted set, which the
 * agent takes from every message, is in each.
 */
export function syncUpdateMessages(push: SyncPush, maxBytes = SYNC_MESSAGE_ENTRY_BYTES): SyncUpdate[] {
  const bundles = [...(push.bundle !== undefined ? [push.bundle] : []), ...(push.federatedBundles ?? [])];
  const each = 3 * VARINT_FIELD + push.tainted.reduce((n, id) => n + field(id), 0);
  const first = bundles.reduce((n, b) => n + bundleWireBytes(b), 0);
  const parts = splitSyncPush(push.entries, push.removed, maxBytes, { first, each });
  return parts.map((part, i) => {
    const update: SyncUpdate = {
      revision: push.revision,
      initial: push.initial && i === parts.length - 1,
      entries: part.entries,
      removed_entry_ids: part.removed,
      federated_bundles: i === 0 ? (push.federatedBundles ?? []) : [],
      federated_bundles_changed: i === 0 && push.federatedBundles !== undefined,
      tainted_authority_ids: push.tainted,
    };
    if (i === 0 && push.bundle !== undefined) update.bundle = push.bundle;
    return update;
  });
}

/** One message's share of a push: entries and removed IDs. */
export interface SyncPart {
  entries: ProtoEntry[];
  removed: string[];
}

/** Bytes of a string field on the wire, with its tag and length prefix (at most 4 bytes below 2 MiB). */
const field = (s: string | undefined): number => (s === undefined ? 0 : Buffer.byteLength(s) + 4);

/** Bytes of a length-delimited field of `n` bytes: a one-byte tag, the length's varint, the bytes. */
function framed(n: number): number {
  let varint = 1;
  for (let rest = n; rest >= 128; rest = Math.floor(rest / 128)) varint++;
  return 1 + varint + n;
}

/** A tagged varint (an int64, a bool) at its largest. */
const VARINT_FIELD = 11;

/**
 * An upper estimate of a bundle's encoded size in a SyncUpdate: a federated one may hold megabytes of roots (a
 * partner's endpoint serves up to 1 MiB of document, `bundle set` takes up to the admin API's 4 MiB request), which
 * the first message carries besides its entries.
 */
export function bundleWireBytes(b: ProtoBundle): number {
  let n = field(b.trust_domain) + 2 * VARINT_FIELD;
  for (const der of b.x509_authorities ?? []) n += framed(der.length);
  for (const k of b.jwt_authorities ?? []) n += framed(field(k.kid) + framed(k.public_key?.length ?? 0) + VARINT_FIELD);
  return framed(n);
}

/**
 * An upper estimate of an entry's encoded size: its strings with their framing, and 48 bytes for the numbers, flags and
 * the entry's own framing. Those come to 45 at most: the TTLs are validated non-negative int32s (5 bytes), the revision
 * and created_at_ms safe integers (8), created_at seconds (5), the flags 1 each, with a tag each, and the entry's tag
 * and length (5). A negative number would take 10 bytes and break the bound: the server stores none.
 */
export function entryWireBytes(e: ProtoEntry): number {
  if (!Object.isFrozen(e)) return estimateEntryBytes(e);
  let n = estimatedOfFrozen.get(e);
  if (n === undefined) estimatedOfFrozen.set(e, (n = estimateEntryBytes(e)));
  return n;
}

/**
 * entryWireBytes of the frozen messages every stream shares (sync-entry-encoding.ts): with the encoding cached, the
 * estimate's string walk was most of what a first update of 2,004 entries cost (bench/HISTORY.md, thirty-eighth
 * session).
 */
const estimatedOfFrozen = new WeakMap<ProtoEntry, number>();

function estimateEntryBytes(e: ProtoEntry): number {
  let n = 48 + field(e.id) + field(e.spiffe_id) + field(e.parent_id) + field(e.hint);
  for (const s of e.selectors ?? []) n += 4 + field(s.type) + field(s.value);
  for (const d of e.dns_names ?? []) n += field(d);
  for (const td of e.federates_with ?? []) n += field(td);
  return n;
}

/**
 * A push's entries and removals cut into parts of at most `maxBytes` each (by entryWireBytes, with `overhead`: the
 * bytes of the first part's bundles, and of what each part carries besides its entries), in order; always at least one part, and an entry larger than `maxBytes` alone goes in a part of
 * its own, as do bundles that leave no room for one.
 */
export function splitSyncPush(
  entries: readonly ProtoEntry[], removed: readonly string[], maxBytes = SYNC_MESSAGE_ENTRY_BYTES, overhead = { first: 0, each: 0 },
): SyncPart[] {
  const parts: SyncPart[] = [{ entries: [], removed: [] }];
  let size = overhead.first + overhead.each;
  const room = (bytes: number): SyncPart => {
    let part = parts[parts.length - 1]!;
    // A part with something in it (entries, or the first one's bundles) takes no more than the bound.
    if (size > overhead.each && size + bytes > maxBytes) {
      part = { entries: [], removed: [] };
      parts.push(part);
      size = overhead.each;
    }
    size += bytes;
    return part;
  };
  for (const e of entries) room(entryWireBytes(e)).entries.push(e);
  for (const id of removed) room(field(id)).removed.push(id);
  return parts;
}
