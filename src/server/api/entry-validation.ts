import { invalidArgument } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { parseSpiffeId, parseTrustDomain, parseWorkloadId } from '../../common/spiffe/spiffe-id.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { NewEntry } from '../datastore/datastore.js';
import type { ProtoEntry, ProtoSelector } from './proto-types.js';
import { MAX_COMMON_NAME } from '../../common/x509/name.js';

/** An entry as the API accepted it: validated, normalised, TTLs in seconds (0: the server's default) — what the datastore creates. */
export type ValidEntry = Omit<NewEntry, 'id'>;

export interface EntryLimits {
  trustDomain: string;
  maxX509SvidTtlMs: number;
  maxJwtSvidTtlMs: number;
}

const SELECTOR_TYPE_RE = /^[a-z0-9_-]{1,64}$/;
const DNS_LABEL_RE = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
const MAX_HINT_BYTES = 1024;
/**
 * Members of an entry's set fields (selectors, federates_with) and of a ListEntries filter on them. Real entries
 * hold a handful; the bound keeps every set query far below SQLite's expression depth (1,000), which a filter of
 * ~500 selectors reached.
 */
export const MAX_SELECTORS = 128;
const MAX_SELECTOR_VALUE_BYTES = 1024;

/**
 * Entries (CreateEntries) or entry IDs (DeleteEntries) per admin call: each call is one datastore transaction, held
 * while every item is written, and its answer carries one result per item. Larger sets are split by the caller (the
 * CLI's `entry create --data` and `entry delete --file` do).
 */
export const MAX_ENTRY_BATCH = 10_000;

/** The namespace meshid keeps for its own identities (server, agents); entries and minted SVIDs may not claim it. */
export const RESERVED_NAMESPACE = '/meshid';

/** Whether a SPIFFE ID path is in RESERVED_NAMESPACE: its root, which no identity uses yet, as well as every path under it. */
export function isReservedPath(path: string): boolean {
  return path === RESERVED_NAMESPACE || path.startsWith(`${RESERVED_NAMESPACE}/`);
}

export function serverId(trustDomain: string): string {
  return `spiffe://${trustDomain}/meshid/server`;
}

/**
 * `use`: an entry's (or a token's) selectors are held to what the attestor can make; a filter's only to their form,
 * since it looks for what is stored, and entries written before a check was added (unix:uid:0100) must stay findable.
 */
export function validateSelector(s: ProtoSelector | undefined, index: number, use: SelectorUse = 'write'): Selector {
  const type = s?.type ?? '';
  const value = s?.value ?? '';
  if (!SELECTOR_TYPE_RE.test(type)) {
    throw invalidArgument(`selector ${index + 1}: type "${type}" is invalid: use lowercase letters, digits, "_" or "-" (e.g. unix:uid:1000)`);
  }
  if (value === '') throw invalidArgument(`selector ${index + 1} (${type}): value is empty (e.g. unix:uid:1000)`);
  if (Buffer.byteLength(value) > MAX_SELECTOR_VALUE_BYTES) throw invalidArgument(`selector ${index + 1} (${type}): value is longer than 1024 bytes`);
  if (type === 'unix') checkUnixSelector(value, index, use);
  return { type, value };
}

/**
 * The selectors meshid's unix attestor makes (agent/attestor), checked so an entry that could never match (a
 * misspelt key, a uid that is not a number) is refused when written rather than found out when nothing gets its SVID.
 */
const NUMERIC_ID = /^\d{1,10}$/;
const UNIX_SELECTORS: Readonly<Record<string, { re: RegExp; expect: string; placeholder: string }>> = {
  uid: { re: NUMERIC_ID, expect: 'a numeric uid', placeholder: '<uid>' },
  user: { re: /^.+$/, expect: 'a user name', placeholder: '<user>' },
  gid: { re: NUMERIC_ID, expect: 'a numeric gid', placeholder: '<gid>' },
  group: { re: /^.+$/, expect: 'a group name', placeholder: '<group>' },
  supplementary_gid: { re: NUMERIC_ID, expect: 'a numeric gid', placeholder: '<gid>' },
  supplementary_group: { re: /^.+$/, expect: 'a group name', placeholder: '<group>' },
  path: { re: /^\//, expect: 'an absolute path', placeholder: '<path>' },
  sha256: { re: /^[0-9a-f]{64}$/, expect: '64 lowercase hex digits', placeholder: '<sha256>' },
};

/** The keys of the unix selectors the attestor makes (uid, user, ...). */
export const UNIX_SELECTOR_KEYS: readonly string[] = Object.keys(UNIX_SELECTORS);

function checkUnixSelector(value: string, index: number, use: SelectorUse): void {
  const colon = value.indexOf(':');
  const key = colon === -1 ? value : value.slice(0, colon);
  // Own keys only: UNIX_SELECTORS["constructor"] is Object's, and reading its `re` would throw a TypeError (INTERNAL).
  const rule = Object.hasOwn(UNIX_SELECTORS, key) ? UNIX_SELECTORS[key] : undefined;
  if (rule === undefined) {
    throw invalidArgument(
      `selector ${index + 1}: unix:${value} is not a selector the unix attestor makes: use ${Object.keys(UNIX_SELECTORS).map((k) => `${k}:`).join(', ')} (e.g. unix:uid:1000)`,
    );
  }
  // `unix:uid` alone has no value to quote: saying `got "uid"` read as if the key had been taken for the value.
  if (colon === -1 || colon === value.length - 1) {
    throw invalidArgument(`selector ${index + 1}: unix:${key} has no value: write unix:${key}:${rule.placeholder} (${rule.expect})`);
  }
  if (!rule.re.test(value.slice(colon + 1))) throw invalidArgument(`selector ${index + 1}: unix:${key}: needs ${rule.expect}, got "${value.slice(colon + 1)}"`);
  if (rule.re === NUMERIC_ID && use === 'write') checkNumericId(key, value.slice(colon + 1), index);
}

/** Linux ids are 32-bit; (uid_t)-1 is "no id", which no process has. */
const MAX_ID = 4_294_967_294;

/**
 * The attestor writes ids as the kernel reports them, in plain decimal: "0100" or a number past 32 bits would be an
 * entry no process ever matches, found out only when nothing gets its SVID.
 */
function checkNumericId(key: string, id: string, index: number): void {
  const n = Number(id);
  if (n > MAX_ID) throw invalidArgument(`selector ${index + 1}: unix:${key}:${id} can never match: ids go up to ${MAX_ID}`);
  if (String(n) !== id) throw invalidArgument(`selector ${index + 1}: unix:${key}:${id} can never match: the attestor writes ids without leading zeros; write unix:${key}:${n}`);
}

/** Selectors being written (an entry, a join token) or looked for (a ListEntries filter); see validateSelector. */
export type SelectorUse = 'write' | 'filter';

/** An entry's or a filter's selectors: each valid, at most MAX_SELECTORS. */
export function validateSelectors(selectors: readonly (ProtoSelector | undefined)[], use: SelectorUse = 'write'): Selector[] {
  if (selectors.length > MAX_SELECTORS) throw invalidArgument(`${selectors.length} selectors: at most ${MAX_SELECTORS} are accepted`);
  return selectors.map((s, i) => validateSelector(s, i, use));
}

function ttlSeconds(value: number | undefined, maxMs: number, name: string, maxFlag: string): number {
  const v = Number(value ?? 0);
  if (!Number.isInteger(v) || v < 0) throw invalidArgument(`${name} must be a whole number of seconds ≥ 0, got ${value}`);
  // 0 stays 0, "the server's default", resolved when signing (SPIRE's meaning): a changed default applies to it.
  if (v === 0) return 0;
  if (v * 1000 > maxMs) {
    throw invalidArgument(
      `${name} ${formatDuration(v * 1000)} exceeds the server's ${maxFlag} (${formatDuration(maxMs)}): ask for less, or raise ${maxFlag} in the server config`,
    );
  }
  return v;
}

function validateDnsName(name: string): string {
  const n = name.toLowerCase();
  if (n.length === 0 || n.length > 253) throw invalidArgument(`DNS name "${name}" must be 1-253 characters`);
  const labels = n.split('.');
  labels.forEach((label, i) => {
    if (i === 0 && label === '*' && labels.length > 2) return;
    if (!DNS_LABEL_RE.test(label)) throw invalidArgument(`DNS name "${name}" is invalid: label "${label}" must be 1-63 letters, digits or "-"`);
  });
  return n;
}

/**
 * The entry's first DNS name when it is longer than a subject CN may be (ub-common-name): its X509-SVIDs then get no
 * CN, where the leaf's CN is otherwise the first DNS name (as SPIRE's). Accepted as SPIRE accepts it (the name stays a
 * DNS SAN), but the operator is told: a tool that maps the CN to a user (PostgreSQL, Kafka, nginx) finds none.
 */
export function firstDnsNameBeyondCn(dnsNames: readonly string[] | undefined): string | undefined {
  const first = dnsNames?.[0];
  return first !== undefined && first.length > MAX_COMMON_NAME ? first : undefined;
}

/** Validates an entry from the admin API against the SPIFFE-ID rules and the server's TTL limits. */
export function validateEntry(e: ProtoEntry | undefined, limits: EntryLimits): ValidEntry {
  if (e === undefined || e === null) throw invalidArgument('entry is missing');
  const td = limits.trustDomain;
  const spiffeId = parseWorkloadId(e.spiffe_id ?? '', td, 'spiffe_id').id;
  if (isReservedPath(parseSpiffeId(spiffeId).path)) {
    throw invalidArgument(`spiffe_id "${spiffeId}" is in the reserved ${RESERVED_NAMESPACE} namespace (server and agent identities)`);
  }
  const parentId = parseWorkloadId(e.parent_id ?? '', td, 'parent_id').id;
  if (parentId === spiffeId) throw invalidArgument(`an entry cannot be its own parent (${spiffeId})`);
  const selectors = validateSelectors(e.selectors ?? []);
  if (selectors.length === 0) throw invalidArgument('at least one selector is required (e.g. --selector unix:uid:1000)');
  const unique = new Map(selectors.map((s) => [`${s.type}:${s.value}`, s]));
  const hint = e.hint ?? '';
  if (Buffer.byteLength(hint) > MAX_HINT_BYTES) throw invalidArgument('hint is longer than 1024 bytes');
  if ((e.federates_with ?? []).length > MAX_SELECTORS) throw invalidArgument(`${e.federates_with!.length} federates_with trust domains: at most ${MAX_SELECTORS} are accepted`);
  const federatesWith = [...new Set((e.federates_with ?? []).map((t) => parseTrustDomain(t)))];
  if (federatesWith.includes(td)) throw invalidArgument(`federates_with must name foreign trust domains, not our own (${td})`);
  return {
    spiffeId,
    parentId,
    selectors: [...unique.values()].sort((a, b) => a.type.localeCompare(b.type) || a.value.localeCompare(b.value)),
    x509SvidTtlSeconds: ttlSeconds(e.x509_svid_ttl, limits.maxX509SvidTtlMs, 'x509_svid_ttl', 'max_x509_svid_ttl'),
    jwtSvidTtlSeconds: ttlSeconds(e.jwt_svid_ttl, limits.maxJwtSvidTtlMs, 'jwt_svid_ttl', 'max_jwt_svid_ttl'),
    dnsNames: [...new Set((e.dns_names ?? []).map(validateDnsName))],
    hint,
    federatesWith: federatesWith.sort(),
    admin: e.admin === true,
    downstream: e.downstream === true,
  };
}
