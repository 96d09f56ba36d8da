import { invalidArgument } from '../../common/errors.js';
import type { EntryFilter } from './datastore.js';
import { normalizeSelectors } from './entry-identity.js';

/**
 * Turns an EntryFilter into a WHERE clause over `registration_entries e`, in SQL that SQLite and PostgreSQL both
 * accept (positional `?` parameters; a PostgreSQL driver rewrites them to $n). Selector and federates_with matching
 * follow SPIRE's semantics (see SelectorMatch) over the indexed entry_selectors and entry_federates_with tables.
 */
export interface SqlWhere {
  /** Conditions joined with AND, or '1 = 1'. */
  where: string;
  params: Array<string | number>;
}

export function entryFilterSql(filter: EntryFilter): SqlWhere {
  const conds: string[] = [];
  const params: Array<string | number> = [];
  if (filter.spiffeId !== undefined) {
    conds.push('e.spiffe_id = ?');
    params.push(filter.spiffeId);
  }
  if (filter.parentId !== undefined) {
    conds.push('e.parent_id = ?');
    params.push(filter.parentId);
  }
  if (filter.hint !== undefined) {
    conds.push('e.hint = ?');
    params.push(filter.hint);
  }
  if (filter.downstream === true) conds.push('e.downstream = 1');
  const sets: Array<SqlWhere | undefined> = [
    filter.federatesWith && setMatchSql(filter.federatesWith.match, FEDERATES_WITH, [...new Set(filter.federatesWith.trustDomains)].map((td) => [td])),
    filter.selectors && setMatchSql(filter.selectors.match, SELECTORS, normalizeSelectors(filter.selectors.selectors).map((s) => [s.type, s.value])),
  ];
  for (const set of sets) {
    if (set !== undefined) {
      conds.push(set.where);
      params.push(...set.params);
    }
  }
  if (filter.pageToken !== undefined && filter.pageToken !== '') {
    conds.push('e.id > ?');
    params.push(decodePageToken(filter.pageToken));
  }
  return { where: conds.length > 0 ? conds.join(' AND ') : '1 = 1', params };
}

/** A table of an entry's set-valued field: its rows hold `entry_id` and these columns. */
interface SetTable {
  table: string;
  columns: readonly string[];
}

const SELECTORS: SetTable = { table: 'entry_selectors', columns: ['type', 'value'] };
const FEDERATES_WITH: SetTable = { table: 'entry_federates_with', columns: ['trust_domain'] };

/** `(a.type = ? AND a.value = ?) OR …`: a row of `alias` equal to one of `tuples`. */
function anyOf(alias: string, set: SetTable, tuples: readonly string[][]): SqlWhere {
  return {
    where: tuples.map(() => `(${set.columns.map((c) => `${alias}.${c} = ?`).join(' AND ')})`).join(' OR '),
    params: tuples.flat(),
  };
}

/** An entry's set (selectors, trust domains federated with) against the given members, with SPIRE's match semantics. */
function setMatchSql(match: string, set: SetTable, tuples: readonly string[][]): SqlWhere | undefined {
  const n = tuples.length;
  if (n === 0) {
    // Every entry has all of no members; nothing equals, is within or overlaps the empty set.
    if (match === 'superset') return undefined;
    if (['exact', 'subset', 'any'].includes(match)) return { where: '1 = 0', params: [] };
  }
  const s = anyOf('s', set, tuples);
  const having = `e.id IN (SELECT s.entry_id FROM ${set.table} s WHERE ${s.where} GROUP BY s.entry_id HAVING COUNT(*) = ?)`;
  switch (match) {
    case 'any':
      return { where: `e.id IN (SELECT s.entry_id FROM ${set.table} s WHERE ${s.where})`, params: s.params };
    case 'superset':
      return { where: having, params: [...s.params, n] };
    case 'exact':
      return {
        where: `${having} AND (SELECT COUNT(*) FROM ${set.table} c WHERE c.entry_id = e.id) = ?`,
        params: [...s.params, n, n],
      };
    case 'subset': {
      const o = anyOf('o', set, tuples);
      return {
        where:
          `e.id IN (SELECT s.entry_id FROM ${set.table} s WHERE ${s.where}) AND ` +
          `NOT EXISTS (SELECT 1 FROM ${set.table} o WHERE o.entry_id = e.id AND NOT (${o.where}))`,
        params: [...s.params, ...o.params],
      };
    }
    default:
      throw invalidArgument(`match "${match}" must be exact, subset, superset or any`);
  }
}

/** Page tokens are opaque to callers: the last id of the page, base64url-encoded. */
export function encodePageToken(lastId: string): string {
  return Buffer.from(`id:${lastId}`).toString('base64url');
}

function decodePageToken(token: string): string {
  const text = Buffer.from(token, 'base64url').toString();
  if (!text.startsWith('id:') || Buffer.from(text).toString('base64url') !== token) {
    throw invalidArgument('page_token is not one this server issued: pass next_page_token from the previous page');
  }
  return text.slice(3);
}
