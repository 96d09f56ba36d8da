import { entryToEntryMessage, type EntryFields, type EntryMessage } from '../../common/entry-message.js';
import { invalidArgument } from '../../common/errors.js';
import { formatSelector, type Selector } from '../../common/spiffe/selector.js';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe/spiffe-id.js';

/**
 * A registration entry as the agent holds it: what the server's Sync stream sent (meshid.v1.Entry), validated and in
 * the agent's own shape. Times are epoch milliseconds.
 */
export interface AgentEntry extends EntryFields {
  readonly createdAt: number;
  /** Whether createdAt came in milliseconds; false from a server, or a stored state, that sent whole seconds. */
  readonly createdAtExact: boolean;
}

/**
 * Converts and checks an entry from the server. An entry the agent could not serve correctly (no ID, a SPIFFE ID
 * that is not a workload ID, an empty selector) is refused with invalid_argument rather than half-applied.
 */
export function entryFromMessage(m: EntryMessage): AgentEntry {
  const id = m.id ?? '';
  if (id === '') throw invalidArgument('entry without an id');
  const spiffeId = parseSpiffeId(m.spiffe_id ?? '');
  if (spiffeId.path === '') throw invalidArgument(`entry ${id}: ${spiffeId.id} has no path and cannot be a workload identity`);
  const selectors = (m.selectors ?? []).map((s) => ({ type: s.type ?? '', value: s.value ?? '' }));
  if (selectors.length === 0) throw invalidArgument(`entry ${id} has no selectors`);
  if (selectors.some((s) => s.type === '' || s.value === '')) throw invalidArgument(`entry ${id} has an empty selector`);
  const entry: AgentEntry = Object.freeze({
    id,
    spiffeId: spiffeId.id,
    parentId: m.parent_id ?? '',
    selectors: Object.freeze(selectors),
    x509SvidTtlSeconds: m.x509_svid_ttl ?? 0,
    jwtSvidTtlSeconds: m.jwt_svid_ttl ?? 0,
    dnsNames: Object.freeze([...(m.dns_names ?? [])]),
    hint: m.hint ?? '',
    federatesWith: Object.freeze((m.federates_with ?? []).map((td) => parseTrustDomain(td))),
    admin: m.admin ?? false,
    downstream: m.downstream ?? false,
    revision: m.revision ?? 0,
    createdAt: m.created_at_ms || (m.created_at ?? 0) * 1000,
    createdAtExact: (m.created_at_ms ?? 0) > 0,
  });
  inputsOf.set(entry, encodeInputs(entry));
  return entry;
}

/** The reverse, for persistence: the same message shape the server sends. */
export function entryToMessage(e: AgentEntry): EntryMessage {
  // Never a time made from seconds passed off as milliseconds: the store would then keep the wrong order for good.
  return entryToEntryMessage(e, e.createdAt, e.createdAtExact);
}

/**
 * What the X.509-SVID of an entry is made from (SPIFFE ID, DNS names, TTL). An SVID is re-signed when this changes;
 * other entry changes (selectors, hint, federation) only change who gets it and what comes with it. The string is
 * stored with each SVID (WorkloadSvid.inputs, persisted in the agent's state), so its form must not change.
 */
export function certificateInputs(e: AgentEntry): string {
  return inputsOf.get(e) ?? encodeInputs(e);
}

/**
 * Each entry's inputs, encoded once when entryFromMessage made it: the issuer compares them two or three times per
 * entry and signing round, and a JSON encoding each time was ~40 % of the CPU of a retry round of 10,000 entries
 * during an outage. Only entries made there are remembered, because only those are frozen down to their DNS names;
 * any other object (a spread copy with other DNS names) is encoded on every call, never answered with the inputs of
 * the entry it came from.
 */
const inputsOf = new WeakMap<AgentEntry, string>();

function encodeInputs(e: AgentEntry): string {
  return JSON.stringify([e.spiffeId, e.dnsNames, e.x509SvidTtlSeconds]);
}

/** Selector keys ("type:value") of an entry, the form the matching index uses. */
export function selectorKeys(selectors: readonly Selector[]): string[] {
  return selectors.map(formatSelector);
}

/**
 * The default-identity order (WL-API §8: svids[0] is the default): oldest entry first, ties by ID, so adding an entry
 * never changes which identity a workload gets by default.
 */
export function compareEntryAge(a: AgentEntry, b: AgentEntry): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
