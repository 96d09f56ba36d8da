import { invalidArgument } from '../../common/errors.js';
import { parseSpireJson } from './spire-json.js';
import { serverId } from '../api/entry-validation.js';
import type { ProtoEntry } from './admin-types.js';

/**
 * `entry create --data FILE`: registration entries in the JSON of `spire-server entry create -data`, so an operator's
 * SPIRE entry files load unchanged: `{"entries": [{"spiffe_id", "parent_id", "selectors": [{"type", "value"}],
 * "x509_svid_ttl" (or SPIRE's older "ttl"), "jwt_svid_ttl", "dns_names", "federates_with", "hint", "admin",
 * "downstream", "entry_id"}]}`. Field names match case-insensitively, as Go's encoding/json matches them for SPIRE.
 * What meshid has no equivalent for is refused by name rather than dropped: an entry that silently lost a setting
 * would be a different entry. So is a field given twice in one object (in any case): one of the two would be lost.
 */
export function parseEntryFile(text: string, source: string): ProtoEntry[] {
  const doc = parseSpireJson(text, source);
  const entries = isObject(doc) ? field(doc, 'entries') : undefined;
  if (!Array.isArray(entries)) throw invalidArgument(`${source} must be a JSON object with an "entries" array, as spire-server entry create -data reads`);
  return entries.map((raw, i) => entryOf(raw, `${source}: entry ${i + 1}`));
}

/**
 * `entry delete --file FILE`: entry IDs in the JSON of `spire-server entry delete -file` (its BatchDeleteEntryRequest:
 * `{"ids": ["...", ...]}`), the name matched whatever its case, as Go's encoding/json matches it.
 */
export function parseEntryIdFile(text: string, source: string): string[] {
  const doc = parseSpireJson(text, source);
  const ids = isObject(doc) ? field(doc, 'ids') : undefined;
  if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string')) {
    throw invalidArgument(`${source} must be a JSON object with an "ids" array of entry IDs, as spire-server entry delete -file reads`);
  }
  return ids as string[];
}

/** What adoptSpireParents did to a file's entries, for the CLI to say. */
export interface SpireParents {
  /** Node aliases SPIRE parents to its server's ID (spiffe://<td>/spire/server), re-parented to meshid's. */
  readonly nodeAliases: number;
  /** Entries parented to a SPIRE agent's ID (spiffe://<td>/spire/agent/...), which no meshid agent has. */
  readonly underSpireAgents: number;
}

/**
 * SPIRE's own IDs in an entry file's parents. A SPIRE node alias is parented to `spiffe://<td>/spire/server`;
 * meshid's to `spiffe://<td>/meshid/server`: taken as written it would be a workload entry under an agent no host
 * has, so it becomes a node alias here too (re-parented in place). An entry under a SPIRE agent's ID is left as
 * written, for the operator to re-parent: which meshid agent or alias stands for that node is theirs to say.
 */
export function adoptSpireParents(entries: ProtoEntry[]): SpireParents {
  let nodeAliases = 0;
  let underSpireAgents = 0;
  for (const e of entries) {
    const server = /^spiffe:\/\/([^/]+)\/spire\/server$/.exec(e.parent_id ?? '');
    if (server !== null) {
      e.parent_id = serverId(server[1]!);
      nodeAliases++;
    } else if (/^spiffe:\/\/[^/]+\/spire\/agent\//.test(e.parent_id ?? '')) {
      underSpireAgents++;
    }
  }
  return { nodeAliases, underSpireAgents };
}

/** SPIRE fields meshid carries, by lowercased name, and the admin API field each becomes. */
const FIELDS: Readonly<Record<string, keyof ProtoEntry>> = {
  spiffe_id: 'spiffe_id',
  parent_id: 'parent_id',
  selectors: 'selectors',
  x509_svid_ttl: 'x509_svid_ttl',
  ttl: 'x509_svid_ttl',
  jwt_svid_ttl: 'jwt_svid_ttl',
  dns_names: 'dns_names',
  federates_with: 'federates_with',
  hint: 'hint',
  admin: 'admin',
  downstream: 'downstream',
  entry_id: 'id',
};

/** SPIRE fields without a meshid meaning that are harmless at their zero value (what SPIRE's own exports carry). */
const IGNORED_AT_ZERO = new Set(['revision_number', 'entryexpiry', 'store_svid', 'created_at']);

/**
 * SPIRE 1.15's additional_attributes (disable_x509_svid_prefetch, jwt_svid_include_jti): harmless when absent, null or
 * all false; a tunable set to true asks for behaviour meshid has not, so it is refused by name.
 */
function checkAdditionalAttributes(key: string, value: unknown, where: string): void {
  if (value === null) return;
  if (!isObject(value)) throw invalidArgument(`${where}: "${key}" must be an object of SPIRE's entry tunables`);
  for (const [name, v] of Object.entries(value)) {
    if (v === false || v === null || v === 0) continue;
    throw invalidArgument(`${where}: "${key}.${name}" has no meshid equivalent unless false (the agent signs an X509-SVID for every entry it may serve, and JWT-SVIDs carry no jti); remove it`);
  }
}

function entryOf(raw: unknown, where: string): ProtoEntry {
  if (!isObject(raw)) throw invalidArgument(`${where} is not a JSON object`);
  const e: ProtoEntry = {};
  for (const [key, value] of Object.entries(raw)) {
    const name = key.toLowerCase();
    const target = FIELDS[name];
    if (name === 'additional_attributes') {
      checkAdditionalAttributes(key, value, where);
      continue;
    }
    if (target === undefined) {
      if (IGNORED_AT_ZERO.has(name) && (value === 0 || value === false || value === null || value === '')) continue;
      throw invalidArgument(`${where}: "${key}" has no meshid equivalent${IGNORED_AT_ZERO.has(name) ? ' unless 0 or false' : ''}; remove it`);
    }
    const parsed = valueOf(target, value, `${where}: "${key}"`);
    const before = e[target];
    if (before !== undefined) {
      // SPIRE writes its older "ttl" beside x509_svid_ttl; they agree or one is 0 (unset).
      if (target !== 'x509_svid_ttl' || (before !== 0 && parsed !== 0 && before !== parsed)) {
        throw invalidArgument(`${where}: "${key}" sets ${target} a second time, to another value`);
      }
      if (parsed === 0) continue;
    }
    (e as Record<string, unknown>)[target] = parsed;
  }
  return e;
}

function valueOf(target: keyof ProtoEntry, value: unknown, where: string): unknown {
  switch (target) {
    case 'selectors':
      if (!Array.isArray(value)) throw invalidArgument(`${where} must be an array of {"type", "value"} objects`);
      return value.map((s, i) => {
        if (!isObject(s) || typeof field(s, 'type') !== 'string' || typeof field(s, 'value') !== 'string') {
          throw invalidArgument(`${where}: selector ${i + 1} must be {"type": "...", "value": "..."}`);
        }
        return { type: field(s, 'type') as string, value: field(s, 'value') as string };
      });
    case 'x509_svid_ttl':
    case 'jwt_svid_ttl':
      if (!Number.isInteger(value) || (value as number) < 0) {
        throw invalidArgument(`${where} must be a whole number of seconds (0: the server default)`);
      }
      // The field is an int32 on the wire; the server's max TTL refuses far less anyway.
      if ((value as number) > 2_147_483_647) throw invalidArgument(`${where} ${String(value)} s is too large (at most 2147483647)`);
      return value;
    case 'dns_names':
    case 'federates_with':
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw invalidArgument(`${where} must be an array of strings`);
      return value;
    case 'admin':
    case 'downstream':
      if (typeof value !== 'boolean') throw invalidArgument(`${where} must be true or false`);
      return value;
    default:
      if (typeof value !== 'string') throw invalidArgument(`${where} must be a string`);
      return value;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A member by case-insensitive name (Go's encoding/json rule, which SPIRE's files were written against). */
function field(o: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(o).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : o[key];
}
