import { renderFields } from '../../common/cli/output.js';
import type { ProtoEntry } from './admin-types.js';

/** A registration entry with every field present: proto3 decoding leaves zero values out. */
interface FullEntry {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: Array<{ type: string; value: string }>;
  x509_svid_ttl: number;
  jwt_svid_ttl: number;
  dns_names: string[];
  hint: string;
  federates_with: string[];
  admin: boolean;
  downstream: boolean;
  revision: number;
  created_at: number;
}

/** Fills the fields proto3 left out with their zero values (--output json prints spire-output.ts's spireEntry). */
function fullEntry(e: ProtoEntry): FullEntry {
  return {
    id: e.id ?? '',
    spiffe_id: e.spiffe_id ?? '',
    parent_id: e.parent_id ?? '',
    selectors: (e.selectors ?? []).map((s) => ({ type: s.type ?? '', value: s.value ?? '' })),
    x509_svid_ttl: e.x509_svid_ttl ?? 0,
    jwt_svid_ttl: e.jwt_svid_ttl ?? 0,
    dns_names: e.dns_names ?? [],
    hint: e.hint ?? '',
    federates_with: e.federates_with ?? [],
    admin: e.admin ?? false,
    downstream: e.downstream ?? false,
    revision: e.revision ?? 0,
    created_at: e.created_at ?? 0,
  };
}

/** Unix seconds as ISO 8601 UTC; 0 (unset) as undefined so the line is left out. */
export function isoTime(unixSeconds: number | undefined): string | undefined {
  return unixSeconds ? new Date(unixSeconds * 1000).toISOString() : undefined;
}

const ttl = (seconds: number): string => (seconds === 0 ? 'default' : String(seconds));

/**
 * One entry in spire-server's layout: `Entry ID`, `SPIFFE ID`, `Parent ID`, `Revision`, TTLs in seconds, one
 * `Selector : type:value` line per selector, then the optional fields only when set.
 */
export function renderEntry(entry: ProtoEntry): string {
  const e = fullEntry(entry);
  return renderFields([
    ['Entry ID', e.id],
    ['SPIFFE ID', e.spiffe_id],
    ['Parent ID', e.parent_id],
    ['Revision', e.revision],
    ['Downstream', e.downstream ? true : undefined],
    ['X509-SVID TTL', ttl(e.x509_svid_ttl)],
    ['JWT-SVID TTL', ttl(e.jwt_svid_ttl)],
    ['Selector', e.selectors.map((s) => `${s.type}:${s.value}`)],
    ['FederatesWith', e.federates_with],
    ['DNS name', e.dns_names],
    ['Admin', e.admin ? true : undefined],
    ['Hint', e.hint === '' ? undefined : e.hint],
    ['Created at', isoTime(e.created_at)],
  ]);
}

/** Code-unit order, as Go compares strings (localeCompare would depend on the ICU locale). */
const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The order spire-server's `entry show` prints entries in: SPIFFE ID, parent ID, X.509 then JWT TTL, then the
 * selectors (fewer first, then each in turn; the server keeps them sorted). Entry IDs are random, so their order
 * would shuffle the list between servers and runs.
 */
export function compareEntries(x: ProtoEntry, y: ProtoEntry): number {
  const a = fullEntry(x);
  const b = fullEntry(y);
  return (
    compareText(a.spiffe_id, b.spiffe_id) || compareText(a.parent_id, b.parent_id) || a.x509_svid_ttl - b.x509_svid_ttl ||
    a.jwt_svid_ttl - b.jwt_svid_ttl || a.selectors.length - b.selectors.length ||
    a.selectors.reduce((c, s, i) => c || compareText(s.type, b.selectors[i]!.type) || compareText(s.value, b.selectors[i]!.value), 0)
  );
}

/** `Found N entries`, then each entry followed by a blank line, as `spire-server entry show` prints them. */
export function renderEntryList(entries: readonly ProtoEntry[]): string {
  const head = `Found ${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}\n`;
  return head + entries.map((e) => `\n${renderEntry(e)}`).join('');
}
