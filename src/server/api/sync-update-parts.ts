import type { ProtoEntry } from './proto-types.js';

/**
 * The most entry bytes one Sync message carries. gRPC clients take messages of up to 4 MiB unless configured otherwise
 * (meshid-agent's channel, and every agent built before this split, keep that default), and an agent's entries add up
 * past it well before the agent API's other bounds: ~450 bytes an entry with Kubernetes-style IDs and selectors, so
 * ~9,400 entries, or some thirty entries of 128 long selectors. One message over it is refused by the agent
 * (RESOURCE_EXHAUSTED, "Received message larger than max"), which reconnects and is sent the same message again: it
 * never syncs, and no deletion reaches it. A quarter of the limit leaves room for the estimate's slack and the bundles
 * that ride along, while a first sync of 10,000 such entries still takes only five messages.
 */
export const SYNC_MESSAGE_ENTRY_BYTES = 1024 * 1024;

/** One message's share of a push: entries and removed IDs. */
export interface SyncPart {
  entries: ProtoEntry[];
  removed: string[];
}

/** Bytes of a string field on the wire, with its tag and length prefix (at most 4 bytes below 2 MiB). */
const field = (s: string | undefined): number => (s === undefined ? 0 : Buffer.byteLength(s) + 4);

/**
 * An upper estimate of an entry's encoded size: its strings with their framing, and 48 bytes for the numbers, flags and
 * the entry's own framing (seven varints of up to 10 bytes, with tags, come to less).
 */
export function entryWireBytes(e: ProtoEntry): number {
  let n = 48 + field(e.id) + field(e.spiffe_id) + field(e.parent_id) + field(e.hint);
  for (const s of e.selectors ?? []) n += 4 + field(s.type) + field(s.value);
  for (const d of e.dns_names ?? []) n += field(d);
  for (const td of e.federates_with ?? []) n += field(td);
  return n;
}

/**
 * A push's entries and removals cut into parts of at most `maxBytes` each (by entryWireBytes), in order; always at
 * least one part, and an entry larger than `maxBytes` alone goes in a part of its own.
 */
export function splitSyncPush(entries: readonly ProtoEntry[], removed: readonly string[], maxBytes = SYNC_MESSAGE_ENTRY_BYTES): SyncPart[] {
  const parts: SyncPart[] = [{ entries: [], removed: [] }];
  let size = 0;
  const room = (bytes: number): SyncPart => {
    let part = parts[parts.length - 1]!;
    if (size > 0 && size + bytes > maxBytes) {
      part = { entries: [], removed: [] };
      parts.push(part);
      size = 0;
    }
    size += bytes;
    return part;
  };
  for (const e of entries) room(entryWireBytes(e)).entries.push(e);
  for (const id of removed) room(field(id)).removed.push(id);
  return parts;
}
