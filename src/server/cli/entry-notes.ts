import type { CliIo } from '../../common/cli/output.js';
import { firstDnsNameBeyondCn, UNIX_SELECTOR_KEYS } from '../api/entry-validation.js';
import { MAX_COMMON_NAME } from '../../common/x509/name.js';
import type { ProtoEntry } from './admin-types.js';
import { DATACENTER_RE } from '../config.js';

/**
 * What the entry commands tell the operator on stderr about entries the server stores but that will not act as one
 * may expect (flags recorded only, selectors no workload can match): notes, never refusals, as spire-server stores them.
 */

/**
 * The admin and downstream flags are stored and shown, so that entries and scripts carry over from SPIRE, but
 * meshid grants nothing for them: an operator setting one is told so rather than left to believe it took effect.
 */
export function noteRecordedOnly(io: CliIo, entries: ReadonlyArray<{ admin?: boolean; downstream?: boolean }>): void {
  if (entries.some((e) => e.admin === true)) {
    io.stderr.write("Note: admin is recorded, as SPIRE's -admin, but grants nothing: meshid's admin API is only on the server's local socket\n");
  }
  if (entries.some((e) => e.downstream === true)) {
    io.stderr.write("Note: downstream is recorded, as SPIRE's -downstream, but grants nothing: meshid has no nested servers\n");
  }
}

/**
 * A workload entry with a selector of another type than unix (`uid:1000` for `unix:uid:1000`) matches no process:
 * meshid-agent gives workloads unix selectors only (the server refuses a malformed unix one). It is stored all the
 * same, as spire-server stores it (selectors of other attestors may be meant for other agents), but the operator hears
 * now what would otherwise show as a workload refused. Node aliases (parented by the server) match agents' node
 * selectors, which take any form; see workloadSelectorsOnNodeAlias for unix ones there.
 */
export function noteUnmatchableSelectors(io: CliIo, entries: readonly ProtoEntry[]): void {
  const notes: string[] = [];
  for (const e of entries) {
    if (/^spiffe:\/\/[^/]+\/meshid\/server$/.test(e.parent_id ?? '')) {
      const note = workloadSelectorsOnNodeAlias(e);
      if (note !== undefined) notes.push(note);
      notes.push(...meshidSelectorsNoAgentCarries(e));
      continue;
    }
    notes.push(...conflictingUnixSelectors(e));
    for (const s of e.selectors ?? []) {
      if (s.type === 'unix') continue;
      const meant = UNIX_SELECTOR_KEYS.includes(s.type ?? '') ? `; did you mean unix:${s.type}:${s.value}?` : '';
      notes.push(`Note: entry ${e.id ?? ''} selector ${s.type}:${s.value} can match no workload: meshid-agent gives workloads unix: selectors only${meant}`);
    }
  }
  writeCapped(io, notes, 'entry show --selector <type>:<value> finds the entries');
}

/**
 * An entry whose first DNS name is longer than a subject CN may be: its X509-SVIDs get no CN, where they otherwise
 * carry the first DNS name as CN, as SPIRE's do (firstDnsNameBeyondCn). Stored all the same, as spire-server stores it.
 */
export function noteNoCommonName(io: CliIo, entries: readonly ProtoEntry[]): void {
  const notes: string[] = [];
  for (const e of entries) {
    const first = firstDnsNameBeyondCn(e.dns_names);
    if (first === undefined) continue;
    notes.push(
      `Note: entry ${e.id ?? ''} has a first DNS name of ${first.length} characters (${first}): its X509-SVIDs get no subject CN, which holds at most ${MAX_COMMON_NAME}; ` +
        `the name stays a DNS SAN. If a tool reads the CN (PostgreSQL, Kafka, nginx), put a name of at most ${MAX_COMMON_NAME} characters first`,
    );
  }
  writeCapped(io, notes, "entry show prints each entry's DNS names");
}

/**
 * An `entry create -data` file (one exported from a SPIRE of other attestors, k8s:, docker:) holds thousands of entries
 * a note is about: the first few say what is wrong, a count says how far it goes.
 */
function writeCapped(io: CliIo, notes: readonly string[], findThem: string): void {
  for (const note of notes.slice(0, MAX_NOTES)) io.stderr.write(`${note}\n`);
  if (notes.length > MAX_NOTES) io.stderr.write(`Note: ${notes.length - MAX_NOTES} more notes like these left out (${findThem})\n`);
}

/** Notes of one kind printed one by one per command; the rest are counted. */
const MAX_NOTES = 20;

/**
 * A node alias with unix selectors: an agent attests with meshid:datacenter:<dc> and the selectors its join token was
 * generated with, never with its host's or workloads' unix ones, so such an alias groups no agent unless a token
 * carried exactly those (and the workload the selectors were meant for gets nothing from it: a node alias issues no
 * SVID). Usually a workload entry given the server as parent (`entry update --parent-id spiffe://<td>/meshid/server`).
 * Stored all the same, as spire-server stores any node selector; the operator hears what will happen.
 */
function workloadSelectorsOnNodeAlias(e: ProtoEntry): string | undefined {
  const unix = (e.selectors ?? []).filter((s) => s.type === 'unix').map((s) => `unix:${s.value}`);
  if (unix.length === 0) return undefined;
  return (
    `Warning: entry ${e.id ?? ''} is a node alias (parent ${e.parent_id}) with the workload selector${unix.length === 1 ? '' : 's'} ${unix.join(', ')}: ` +
      'it issues no SVID to a workload, and matches only agents that attested with a join token generated with ' +
      `${unix.map((u) => `--selector ${u}`).join(' ')} (agents carry meshid:datacenter:<dc> and their token's selectors, no unix: ones of their own); ` +
      'for a workload entry, give an agent or node alias as --parent-id'
  );
}

/**
 * A node alias with a meshid: selector other than `meshid:datacenter:<dc>` (`meshid:dc:east`, `meshid:datacenter:East`):
 * the server gives agents that one meshid: selector and refuses meshid: ones on join tokens, so the alias groups no
 * agent, and the workloads under it get nothing, without a word until one is refused. Stored all the same.
 */
function meshidSelectorsNoAgentCarries(e: ProtoEntry): string[] {
  const carried = (value: string): boolean => value.startsWith('datacenter:') && DATACENTER_RE.test(value.slice('datacenter:'.length));
  return (e.selectors ?? [])
    .filter((s) => s.type === 'meshid' && !carried(s.value ?? ''))
    .map((s) => {
      const dc = (s.value ?? '').split(':').pop()!.toLowerCase();
      const meant = DATACENTER_RE.test(dc) ? `; did you mean meshid:datacenter:${dc}?` : '';
      return (
        `Warning: entry ${e.id ?? ''} is a node alias with the selector meshid:${s.value}, which no agent carries: ` +
        `agents carry meshid:datacenter:<dc> (a lowercase datacenter name) and their join token's selectors, none of type meshid${meant}`
      );
    });
}

/** The unix selectors of which the attestor gives a process one value at most (supplementary groups may be many). */
const SINGLE_VALUED_UNIX_KEYS: readonly string[] = ['uid', 'user', 'gid', 'group', 'path', 'sha256'];

/**
 * A workload entry with two values of one single-valued unix selector (`unix:uid:1000` and `unix:uid:1001`): an
 * entry's selectors must all be among the workload's, so it matches no process. Written by an operator who reads
 * selectors as alternatives; stored all the same, as spire-server stores it.
 */
function conflictingUnixSelectors(e: ProtoEntry): string[] {
  const byKey = new Map<string, string[]>();
  for (const s of e.selectors ?? []) {
    if (s.type !== 'unix') continue;
    const value = s.value ?? '';
    const key = value.slice(0, value.indexOf(':'));
    if (!SINGLE_VALUED_UNIX_KEYS.includes(key)) continue;
    byKey.set(key, [...(byKey.get(key) ?? []), `unix:${value}`]);
  }
  return [...byKey.entries()]
    .filter(([, values]) => values.length > 1)
    .map(
      ([key, values]) =>
        `Note: entry ${e.id ?? ''} selectors ${values.join(' and ')} can match no workload together: a process has one ${key}, and ` +
        'a workload must match every selector of an entry; to serve each, create an entry per selector',
    );
}
