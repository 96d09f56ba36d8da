/**
 * Flags shared by several meshid-server commands, with spire-server's spellings as aliases, and the local checks of
 * their values. Local checks only give earlier, clearer errors; the server validates everything again.
 */
import { invalidArgument, MeshidError } from '../../common/errors.js';
import { MAX_SECONDS_FLAG_MS, type FlagSpec } from '../../common/cli/args.js';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { parseSelector } from '../../common/spiffe/selector.js';
import type { ProtoSelector } from './admin-types.js';

export const spiffeIdFlag = (description: string): FlagSpec => ({
  name: 'spiffe-id', aliases: ['spiffeID'], type: 'string', valueName: 'ID', description,
});
export const parentIdFlag = (description: string): FlagSpec => ({
  name: 'parent-id', aliases: ['parentID'], type: 'string', valueName: 'ID', description,
});
export const selectorFlag = (description: string): FlagSpec => ({
  name: 'selector', type: 'strings', valueName: 'TYPE:VALUE', description,
});
export const entryIdFlag = (description: string, repeatable = false): FlagSpec => ({
  name: 'entry-id', aliases: ['entryID'], type: repeatable ? 'strings' : 'string', valueName: 'ID', description,
});
export const datacenterFlag = (description: string): FlagSpec => ({
  name: 'datacenter', type: 'string', valueName: 'NAME', description,
});
export const trustDomainFlag = (description: string): FlagSpec => ({
  // SPIRE's bundle commands call it -id and take spiffe://<td>.
  name: 'trust-domain', aliases: ['id'], type: 'string', valueName: 'TD', description,
});
/** `--ttl` of token generate, x509 mint and jwt mint: the admin API reads 0 as "the server default", and so does the flag (SPIRE's -ttl 0 too). */
export const ttlFlag = (description: string): FlagSpec => ({ name: 'ttl', type: 'duration', zeroAllowed: true, maxMs: MAX_SECONDS_FLAG_MS, description });

/**
 * Checks a SPIFFE ID flag locally (SPIFFE-ID §2) and names it in the error the way an operator reads it:
 * `SPIFFE ID "x" is not a SPIFFE ID: it must start with "spiffe://"`, `Parent ID "…": the trust domain must be lowercase`.
 */
export function checkSpiffeId(value: string, label: string): string {
  try {
    return parseSpiffeId(value).id;
  } catch (err) {
    if (!(err instanceof MeshidError)) throw err;
    const msg = err.message;
    if (msg.startsWith('"')) throw invalidArgument(`${label} ${msg}`);
    if (msg.startsWith('SPIFFE ID ')) throw invalidArgument(`${label} ${msg.slice('SPIFFE ID '.length)}`);
    throw invalidArgument(`${label}: ${msg}`);
  }
}

/** Parses each `--selector type:value` (the value may itself hold ':', as in unix:uid:1000). */
export function checkSelectors(values: readonly string[]): ProtoSelector[] {
  return values.map((v) => {
    const s = parseSelector(v);
    return { type: s.type, value: s.value };
  });
}

/** A trust domain as `example.org` or `spiffe://example.org`; returns the bare name. */
export function checkTrustDomain(value: string): string {
  return parseTrustDomain(value);
}

/**
 * spire-server's -expiresBefore layout, Go's "2006-01-02 15:04:05 -0700 -07": date, time, offset, zone abbreviation.
 * Go's parser takes a fractional second after the seconds even where the layout has none, "." or ",", so SPIRE does.
 */
const SPIRE_DATE = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:[.,](\d+))? ([+-]\d\d)(\d\d)(?: [+-]\d\d)?$/;
/** An RFC 3339 instant, as meshid prints times (2026-05-01T12:00:00Z): a zone is required, so no local-time guessing. */
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$/i;

/**
 * A date flag as epoch milliseconds: RFC 3339 with a zone, or spire-server's `2026-05-01 12:00:00 +0000 +00` (its
 * -expiresBefore format). Anything else, or a day that does not exist, is an InvalidArgument showing both forms.
 */
export function checkDate(value: string, flag: string): number {
  const spire = SPIRE_DATE.exec(value);
  const fraction = spire?.[3] === undefined ? '' : `.${spire[3]}`;
  const iso = spire ? `${spire[1]}T${spire[2]}${fraction}${spire[4]}:${spire[5]}` : RFC3339.test(value) ? value : undefined;
  const ms = iso === undefined ? NaN : Date.parse(iso);
  // Date.parse rolls 2026-02-30 over to March; a date that does not round-trip its day was not a real one.
  if (Number.isNaN(ms) || new Date(ms + offsetMs(iso!)).toISOString().slice(0, 10) !== iso!.slice(0, 10)) {
    throw invalidArgument(`flag ${flag}: "${value}" is not a date: write it as 2026-05-01T12:00:00Z, or as spire-server does, "2026-05-01 12:00:00 +0000 +00"`);
  }
  return ms;
}

/** The zone offset an RFC 3339 instant was written in, in milliseconds east of UTC. */
function offsetMs(iso: string): number {
  const zone = /([+-])(\d\d):(\d\d)$/.exec(iso);
  return zone ? (zone[1] === '-' ? -1 : 1) * (Number(zone[2]) * 60 + Number(zone[3])) * 60_000 : 0;
}
