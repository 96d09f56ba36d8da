import { createHash, randomBytes } from 'node:crypto';
import { invalidArgument } from '../../common/errors.js';
import type { NewEntry, Selector } from './datastore.js';
import { requireText } from './record-guards.js';

/**
 * What makes two registration entries "the same": SPIFFE ID, parent ID and selector set. Normalising here (sorted,
 * unique selectors) is what lets the datastore enforce that uniqueness with one fixed-size indexed hash.
 */

/** Code-unit order, not localeCompare: the canonical order must not depend on the process's ICU locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareSelectors(a: Selector, b: Selector): number {
  return compare(a.type, b.type) || compare(a.value, b.value);
}

/** Sorted by type then value, duplicates removed; copies, so callers' arrays are never aliased. */
export function normalizeSelectors(selectors: readonly Selector[]): Selector[] {
  const unique = new Map<string, Selector>();
  for (const s of selectors) unique.set(JSON.stringify([s.type, s.value]), { type: s.type, value: s.value });
  return [...unique.values()].sort(compareSelectors);
}

/** sha256 (hex) over an unambiguous encoding of (spiffeId, parentId, normalised selectors). */
export function entryIdentityHash(e: Pick<NewEntry, 'spiffeId' | 'parentId' | 'selectors'>): string {
  const canonical = JSON.stringify([e.spiffeId, e.parentId, normalizeSelectors(e.selectors).map((s) => [s.type, s.value])]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** 'e-' + 16 random hex digits: 64 bits, collision-free at any realistic entry count (and checked on insert). */
export function newEntryId(): string {
  return `e-${randomBytes(8).toString('hex')}`;
}

/**
 * The datastore's own guard: not the API's validation (SPIFFE ID syntax, TTL limits), only what would store nonsense.
 * Returns the entry with normalised selectors and de-duplicated federated trust domains.
 */
export function normalizeNewEntry(e: NewEntry): NewEntry {
  requireText('entry spiffeId', e.spiffeId);
  requireText('entry parentId', e.parentId);
  if (e.id !== undefined) requireText('entry id', e.id);
  if (!Array.isArray(e.selectors)) throw invalidArgument('entry selectors must be a list');
  for (const s of e.selectors) {
    requireText('selector type', s?.type);
    if (typeof s.value !== 'string') throw invalidArgument(`selector ${s.type}: value must be a string`);
  }
  requireCount('x509SvidTtlSeconds', e.x509SvidTtlSeconds);
  requireCount('jwtSvidTtlSeconds', e.jwtSvidTtlSeconds);
  requireStrings('dnsNames', e.dnsNames);
  requireStrings('federatesWith', e.federatesWith);
  if (typeof e.hint !== 'string') throw invalidArgument('entry hint must be a string');
  if (typeof e.admin !== 'boolean' || typeof e.downstream !== 'boolean') throw invalidArgument('entry admin and downstream must be booleans');
  const out: NewEntry = {
    spiffeId: e.spiffeId,
    parentId: e.parentId,
    selectors: normalizeSelectors(e.selectors),
    x509SvidTtlSeconds: e.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: e.jwtSvidTtlSeconds,
    dnsNames: [...e.dnsNames],
    hint: e.hint,
    federatesWith: [...new Set(e.federatesWith)].sort(compare),
    admin: e.admin,
    downstream: e.downstream,
  };
  if (e.id !== undefined) out.id = e.id;
  return out;
}

function requireCount(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`entry ${name} must be a whole number ≥ 0, got ${String(value)}`);
  }
}

function requireStrings(name: string, value: unknown): void {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
    throw invalidArgument(`entry ${name} must be a list of non-empty strings`);
  }
}
