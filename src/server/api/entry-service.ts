import { status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { invalidArgument } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import type { Datastore, EntryPatch, NewEntry } from '../datastore/datastore.js';
import { entryToProto } from './convert.js';
import { firstDnsNameBeyondCn, MAX_ENTRY_BATCH, MAX_SELECTORS, validateEntry, validateSelectors, type EntryLimits } from './entry-validation.js';
import { MAX_COMMON_NAME } from '../../common/x509/name.js';
import type { SelectorMatch } from '../datastore/datastore.js';
import { unary } from './handler.js';
import type { ProtoEntry, ProtoSelector } from './proto-types.js';

const MASKABLE = new Set([
  'spiffe_id', 'parent_id', 'selectors', 'x509_svid_ttl', 'jwt_svid_ttl', 'dns_names', 'hint', 'federates_with', 'admin', 'downstream',
]);

/** Admin API: registration entries (meshid.admin.v1.Entries). */
export function entryService(
  ds: Datastore, limits: EntryLimits, log: Logger, federationTrustDomains: ReadonlySet<string> = new Set(),
): UntypedServiceImplementation {
  /**
   * federates_with may name only trust domains this server has a bundle for, or fetches one for (config
   * federates_with, before its first poll): SPIRE refuses the rest too, and a typo would federate with nothing.
   */
  const writeOptions = { federableWithoutBundle: federationTrustDomains };
  return {
    CreateEntries: unary(log, 'CreateEntries', async (req: { entries?: ProtoEntry[] }) => {
      const input = req.entries ?? [];
      if (input.length === 0) throw invalidArgument('no entries given');
      if (input.length > MAX_ENTRY_BATCH) {
        throw invalidArgument(`${input.length} entries in one call: at most ${MAX_ENTRY_BATCH} are accepted; split them into calls of ${MAX_ENTRY_BATCH} or fewer`);
      }
      const results: Array<{ status: { code: number; message: string }; entry?: ProtoEntry }> = new Array(input.length);
      const valid: Array<{ index: number; entry: NewEntry }> = [];
      input.forEach((e, index) => {
        try {
          const entry = { ...validateEntry(e, limits), id: chosenEntryId(e.id) };
          valid.push({ index, entry });
        } catch (err) {
          const s = toServiceError(err);
          results[index] = { status: { code: s.code, message: s.details } };
        }
      });
      const created = valid.length > 0 ? await ds.createEntries(valid.map((v) => v.entry), writeOptions) : [];
      created.forEach((r, i) => {
        const index = valid[i]!.index;
        if (r.entry) {
          results[index] = { status: { code: status.OK, message: '' }, entry: entryToProto(r.entry) };
          log.info({ entryId: r.entry.id, spiffeId: r.entry.spiffeId, parentId: r.entry.parentId }, 'entry created');
          warnNoCommonName(log, r.entry.id, r.entry.dnsNames);
        } else {
          const s = toServiceError(r.error);
          results[index] = { status: { code: s.code, message: s.details }, ...(r.existing && { entry: entryToProto(r.existing) }) };
        }
      });
      return { results };
    }),

    ListEntries: unary(log, 'ListEntries', async (req: {
      spiffe_id?: string; parent_id?: string; selectors?: ProtoSelector[]; selector_match?: string;
      federates_with?: string; federates_with_list?: string[]; federates_with_match?: string; hint?: string; downstream?: boolean;
      page_size?: number; page_token?: string;
    }) => {
      if (req.spiffe_id) parseSpiffeId(req.spiffe_id);
      if (req.parent_id) parseSpiffeId(req.parent_id);
      const selectors = validateSelectors(req.selectors ?? [], 'filter');
      const match = matchOf(req.selector_match, 'exact', 'selector_match');
      const trustDomains = [...(req.federates_with ? [req.federates_with] : []), ...(req.federates_with_list ?? [])];
      if (trustDomains.length > MAX_SELECTORS) throw invalidArgument(`${trustDomains.length} trust domains: at most ${MAX_SELECTORS} are accepted`);
      const federatesMatch = matchOf(req.federates_with_match, 'superset', 'federates_with_match');
      const page = await ds.listEntries({
        spiffeId: req.spiffe_id || undefined,
        parentId: req.parent_id || undefined,
        selectors: selectors.length > 0 ? { match, selectors } : undefined,
        federatesWith: trustDomains.length > 0 ? { match: federatesMatch, trustDomains: trustDomains.map((td) => parseTrustDomain(td)) } : undefined,
        hint: req.hint || undefined,
        downstream: req.downstream === true || undefined,
        pageSize: req.page_size || undefined,
        pageToken: req.page_token || undefined,
      });
      return { entries: page.entries.map(entryToProto), next_page_token: page.nextPageToken ?? '' };
    }),

    GetEntry: unary(log, 'GetEntry', async (req: { id?: string }) => {
      if (!req.id) throw invalidArgument('entry id is required');
      return entryToProto(await ds.getEntry(req.id));
    }),

    UpdateEntry: unary(log, 'UpdateEntry', async (req: { entry?: ProtoEntry; mask?: string[] }) => {
      const id = req.entry?.id;
      if (!id) throw invalidArgument('entry.id is required');
      const mask = req.mask ?? [];
      if (mask.length === 0) throw invalidArgument('nothing to update: give at least one field');
      for (const m of mask) if (!MASKABLE.has(m)) throw invalidArgument(`field "${m}" cannot be updated (updatable: ${[...MASKABLE].join(', ')})`);
      const current = entryToProto(await ds.getEntry(id));
      const merged: ProtoEntry = { ...current };
      for (const m of mask) (merged as Record<string, unknown>)[m] = (req.entry as Record<string, unknown>)[m];
      // Only changed TTLs are judged against today's limits: an entry written under a higher maximum stays editable
      // (its TTL is capped when signing), and the patch below takes only the masked fields.
      if (!mask.includes('x509_svid_ttl')) merged.x509_svid_ttl = 0;
      if (!mask.includes('jwt_svid_ttl')) merged.jwt_svid_ttl = 0;
      const valid = validateEntry(merged, limits);
      const patch: EntryPatch = {};
      for (const m of mask) {
        switch (m) {
          case 'spiffe_id': patch.spiffeId = valid.spiffeId; break;
          case 'parent_id': patch.parentId = valid.parentId; break;
          case 'selectors': patch.selectors = valid.selectors; break;
          case 'x509_svid_ttl': patch.x509SvidTtlSeconds = valid.x509SvidTtlSeconds; break;
          case 'jwt_svid_ttl': patch.jwtSvidTtlSeconds = valid.jwtSvidTtlSeconds; break;
          case 'dns_names': patch.dnsNames = valid.dnsNames; break;
          case 'hint': patch.hint = valid.hint; break;
          case 'federates_with': patch.federatesWith = valid.federatesWith; break;
          case 'admin': patch.admin = valid.admin; break;
          case 'downstream': patch.downstream = valid.downstream; break;
        }
      }
      const updated = await ds.updateEntry(id, patch, writeOptions);
      log.info({ entryId: id, fields: mask }, 'entry updated');
      if (mask.includes('dns_names')) warnNoCommonName(log, id, updated.dnsNames);
      return entryToProto(updated);
    }),

    DeleteEntries: unary(log, 'DeleteEntries', async (req: { ids?: string[] }) => {
      const ids = req.ids ?? [];
      if (ids.length === 0) throw invalidArgument('no entry ids given');
      if (ids.length > MAX_ENTRY_BATCH) {
        throw invalidArgument(`${ids.length} entry IDs in one call: at most ${MAX_ENTRY_BATCH} are accepted; split them into calls of ${MAX_ENTRY_BATCH} or fewer`);
      }
      // An empty ID is a malformed request (SPIRE: InvalidArgument), not an entry that could not be found.
      const deleted = await ds.deleteEntries(ids.filter((id) => id !== ''));
      let next = 0;
      return {
        results: ids.map((id) => {
          const error = id === '' ? invalidArgument('an entry ID is empty: give the ID `entry show` prints') : deleted[next++]!.error;
          if (error) {
            const s = toServiceError(error);
            return { id, status: { code: s.code, message: s.details } };
          }
          log.info({ entryId: id }, 'entry deleted');
          return { id, status: { code: status.OK, message: '' } };
        }),
      };
    }),
  };
}

/** Logged for API clients other than the CLI, which prints a note of its own (entry-notes). */
function warnNoCommonName(log: Logger, entryId: string, dnsNames: readonly string[]): void {
  const first = firstDnsNameBeyondCn(dnsNames);
  if (first === undefined) return;
  log.warn(
    { entryId, dnsName: first, characters: first.length, maxCommonName: MAX_COMMON_NAME },
    "the entry's first DNS name is longer than a subject CN may be: its X509-SVIDs get no CN (the name stays a DNS SAN); put a shorter name first if a tool reads the CN",
  );
}

/** Entry IDs as SPIRE allows them to be chosen (printable, at most 255 bytes); empty: the datastore makes one. */
const ENTRY_ID_RE = /^[\x21-\x7e]{1,255}$/;

function chosenEntryId(id: string | undefined): string | undefined {
  if (id === undefined || id === '') return undefined;
  if (!ENTRY_ID_RE.test(id)) throw invalidArgument(`entry id "${id}" must be 1-255 printable ASCII characters without spaces`);
  return id;
}

const MATCHES: readonly SelectorMatch[] = ['exact', 'subset', 'superset', 'any'];

/** A match mode as the request spells it; empty means `fallback`. */
function matchOf(value: string | undefined, fallback: SelectorMatch, field: string): SelectorMatch {
  const match = (value || fallback) as SelectorMatch;
  if (!MATCHES.includes(match)) throw invalidArgument(`${field} "${value}" must be exact, subset, superset or any`);
  return match;
}
