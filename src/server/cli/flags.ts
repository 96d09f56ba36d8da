/**
 * Flags shared by several meshid-server commands, with spire-server's spellings as aliases, and the local checks of
 * their values. Local checks only give earlier, clearer errors; the server validates everything again.
 */
import { invalidArgument, MeshidError } from '../../common/errors.js';
import type { FlagSpec } from '../../common/cli/args.js';
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
export const ttlFlag = (description: string): FlagSpec => ({ name: 'ttl', type: 'duration', zeroAllowed: true, description });

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
