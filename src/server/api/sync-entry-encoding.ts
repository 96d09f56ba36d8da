import protobuf from 'protobufjs';
import { protoRoot } from '../../common/grpc/proto.js';
import { withResponseSerializers, type Serialize } from '../../common/grpc/service.js';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { RegistrationEntry } from '../datastore/datastore.js';
import { AGENT_PROTO } from './agent-api-options.js';
import { entryToProto } from './convert.js';
import type { ProtoEntry } from './proto-types.js';
import type { SyncUpdate } from './sync-update-parts.js';

/**
 * Each entry encoded once per version, for every Sync stream that carries it. Agents matching one node alias share
 * most of their entries, and an agent's first update carries all of its own: encoding them per stream made the
 * server's CPU grow as agents × entries (27–38 ms per agent of 2,004 entries, all on the event loop:
 * bench/HISTORY.md, thirty-seventh and thirty-eighth sessions), and a fleet opening its streams at once (a new
 * datacenter, agents whose caches were lost) held the loop for as long.
 *
 * Keyed by object, never by ID or revision: the server's view gets a new RegistrationEntry from the datastore at every
 * change (an update; a delete and a re-create under the same ID; a reload of every entry), so a changed entry can only
 * miss, and an entry the view no longer holds takes its bytes with it. The cost is memory: each entry pushed at least
 * once keeps its message and bytes (measured: ~1.4 KB for an entry with two Kubernetes-style selectors, 14 MB for
 * 10,000) for as long as it is unchanged. The message objects made here are frozen, and only frozen ones are cached,
 * so bytes cannot outlive a change made to their object in place.
 */
const protoOfEntry = new WeakMap<RegistrationEntry, ProtoEntry>();
const bytesOfProto = new WeakMap<ProtoEntry, Buffer>();

/** The Entry message of `e` for a Sync update: the same object while `e` is, so its encoding is reused. */
export function syncEntryProto(e: RegistrationEntry): ProtoEntry {
  let p = protoOfEntry.get(e);
  if (p === undefined) {
    const fresh = entryToProto(e);
    // Copies: the entry's own arrays are not this module's to freeze.
    p = Object.freeze({
      ...fresh,
      selectors: Object.freeze((fresh.selectors ?? []).map((s) => Object.freeze(s))),
      dns_names: Object.freeze([...(fresh.dns_names ?? [])]),
      federates_with: Object.freeze([...(fresh.federates_with ?? [])]),
    }) as unknown as ProtoEntry;
    protoOfEntry.set(e, p);
  }
  return p;
}

let entryType: protobuf.Type | undefined;

/** The encoded meshid.v1.Entry of `p`, from the cache when `p` is frozen (syncEntryProto's). */
export function encodedEntry(p: ProtoEntry): Buffer {
  let bytes = bytesOfProto.get(p);
  if (bytes !== undefined) return bytes;
  entryType ??= protoRoot(AGENT_PROTO).lookupType('meshid.v1.Entry');
  bytes = Buffer.from(entryType.encode(entryType.fromObject(p)).finish());
  if (Object.isFrozen(p)) bytesOfProto.set(p, bytes);
  return bytes;
}

/** SyncUpdate.entries: field 3, length-delimited. */
const ENTRIES_TAG = (3 << 3) | 2;

function varintLength(n: number): number {
  let length = 1;
  for (; n >= 0x80; n = Math.floor(n / 0x80)) length++;
  return length;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out[at++] = (n % 0x80) | 0x80;
  out[at++] = n;
  return at;
}

/**
 * A SyncUpdate serializer that takes its entries' bytes from encodedEntry and the rest from `serialize` (the
 * definition's own). The bytes are those of `serialize` alone: protobuf encoders write fields in field-number order,
 * so the fields before `entries` (revision, initial), each entry as tag + length + its bytes, then the fields after it
 * are the same bytes as the whole message encoded at once (sync-entry-encoding.test.ts compares them).
 */
export function syncUpdateSerializer(serialize: Serialize): Serialize {
  return (value: unknown): Buffer => {
    const u = value as SyncUpdate;
    if (u.entries === undefined || u.entries.length === 0) return serialize(value);
    const { revision, initial, entries, ...after } = u;
    const head = serialize({ revision, initial });
    const tail = serialize(after);
    const bodies = entries.map(encodedEntry);
    let total = head.length + tail.length;
    for (const b of bodies) total += 1 + varintLength(b.length) + b.length;
    const out = Buffer.allocUnsafe(total);
    let at = head.copy(out, 0);
    for (const b of bodies) {
      out[at++] = ENTRIES_TAG;
      at = writeVarint(out, at, b.length);
      at += b.copy(out, at);
    }
    tail.copy(out, at);
    return out;
  };
}

/** The agent API's definition with Sync's updates serialized by syncUpdateSerializer. */
export function withSyncEntryEncoding(definition: ServiceDefinition): ServiceDefinition {
  return withResponseSerializers(definition, ['Sync'], syncUpdateSerializer);
}
