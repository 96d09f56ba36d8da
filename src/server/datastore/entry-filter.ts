import { invalidArgument } from '../../common/errors.js';
import type { EntryFilter, Selector } from './datastore.js';
import { normalizeSelectors } from './entry-identity.js';

/**
 * Turns an EntryFilter into a WHERE clause over `registration_entries e`, in SQL that SQLite and PostgreSQL both
 * accept (positional `?` parameters; a PostgreSQL driver rewrites them to $n). Selector matching follows SPIRE's
 * semantics (see SelectorMatch) using the indexed entry_selectors table.
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
  if (filter.federatesWith !== undefined) {
    conds.push('e.id IN (SELECT f.entry_id FROM entry_federates_with f WHERE f.trust_domain = ?)');
    params.push(filter.federatesWith);
  }
  if (filter.selectors !== undefined) {
    const sel = selectorSql(filter.selectors.match, normalizeSelectors(filter.selectors.selectors));
    if (sel !== undefined) {
      conds.push(sel.where);
      params.push(...sel.params);
    }
  }
  if (filter.pageToken !== undefined && filter.pageToken !== '') {
    conds.push('e.id > ?');
    params.push(decodePageToken(filter.pageToken));
  }
  return { where: conds.length > 0 ? conds.join(' AND ') : '1 = 1', params };
}

/** `(a.type = ? AND a.value = ?) OR …` for the given table alias. */
function anyOf(alias: string, selectors: readonly Selector[]): SqlWhere {
  return {
    where: selectors.map(() => `(${alias}.type = ? AND ${alias}.value = ?)`).join(' OR '),
    params: selectors.flatMap((s) => [s.type, s.value]),
  };
}

function selectorSql(match: string, selectors: Selector[]): SqlWhere | undefined {
  const n = selectors.length;
  if (n === 0) {
    // Every entry has all of no selectors; nothing equals, is within or overlaps the empty set (entries have ≥ 1).
    if (match === 'superset') return undefined;
    if (['exact', 'subset', 'any'].includes(match)) return { where: '1 = 0', params: [] };
  }
  const s = anyOf('s', selectors);
  const having = `e.id IN (SELECT s.entry_id FROM entry_selectors s WHERE ${s.where} GROUP BY s.entry_id HAVING COUNT(*) = ?)`;
  switch (match) {
    case 'any':
      return { where: `e.id IN (SELECT s.entry_id FROM entry_selectors s WHERE ${s.where})`, params: s.params };
    case 'superset':
      return { where: having, params: [...s.params, n] };
    case 'exact':
      return {
        where: `${having} AND (SELECT COUNT(*) FROM entry_selectors c WHERE c.entry_id = e.id) = ?`,
        params: [...s.params, n, n],
      };
    case 'subset': {
      const o = anyOf('o', selectors);
      return {
        where:
          `e.id IN (SELECT s.entry_id FROM entry_selectors s WHERE ${s.where}) AND ` +
          `NOT EXISTS (SELECT 1 FROM entry_selectors o WHERE o.entry_id = e.id AND NOT (${o.where}))`,
        params: [...s.params, ...o.params],
      };
    }
    default:
      throw invalidArgument(`selector match "${match}" must be exact, subset, superset or any`);
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
