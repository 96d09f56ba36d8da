import { invalidArgument, MeshidError } from '../errors.js';

/** SPIFFE-ID §2.1: trust domain names are lowercase letters, digits, '.', '-', '_'; at most 255 bytes. */
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
/** SPIFFE-ID §2.2: path segments of [A-Za-z0-9._-]. */
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const MAX_ID_BYTES = 2048;
const MAX_TD_BYTES = 255;
const SCHEME = 'spiffe://';
/**
 * Every ID parseSpiffeId's checks below accept, in one regex over ASCII (so its length is its size in bytes), and
 * nothing they refuse: an agent restoring 10,000 entries parsed their IDs step by step in ~80 ms of its start. What
 * it does not match is judged step by step, for the message naming what is wrong.
 */
const VALID_ID_RE = /^spiffe:\/\/[a-z0-9._-]{1,255}(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._-]+)*$/;

export interface SpiffeId {
  /** Bare trust domain name, e.g. "example.org". */
  readonly trustDomain: string;
  /** Path including the leading "/", or "" for a trust domain ID. */
  readonly path: string;
  /** The canonical string form, byte-exact as given. */
  readonly id: string;
}

/** Validates a bare trust domain name (SPIFFE-ID §2.1) and returns it. */
function parseTrustDomainName(name: string): string {
  if (name === '') throw invalidArgument('trust domain is empty');
  if (Buffer.byteLength(name) > MAX_TD_BYTES) throw invalidArgument(`trust domain "${name.slice(0, 64)}…" is longer than 255 bytes`);
  if (!TRUST_DOMAIN_RE.test(name)) {
    throw invalidArgument(
      `trust domain "${name}" is invalid: only lowercase letters, digits, ".", "-" and "_" are allowed (SPIFFE-ID §2.1)`,
    );
  }
  return name;
}

/**
 * Validates the bare name of the trust domain a meshid server issues SVIDs in: a valid name (SPIFFE-ID §2.1) whose
 * dot-separated labels are all non-empty. SPIFFE-ID allows "example.org.", ".example" and "a..b", but Go's
 * crypto/x509 refuses to parse any certificate whose URI SAN has such a host ("cannot parse URI: invalid domain"), so
 * go-spiffe, SPIRE and grpc-go could not read one SVID, CA certificate or bundle of it. Returns the name; throws
 * invalid_argument.
 */
export function parseIssuingTrustDomain(name: string): string {
  const td = parseTrustDomainName(name);
  if (td.split('.').includes('')) {
    const dotted = td.replace(/^\.+|\.+$/g, '').replace(/\.{2,}/g, '.');
    throw invalidArgument(
      `trust domain "${td}" has an empty label (a leading, trailing or doubled "."): Go's crypto/x509, and with it go-spiffe, SPIRE and grpc-go, ` +
        `cannot parse a certificate naming it${dotted === '' ? '' : `; use "${dotted}"`}`,
    );
  }
  return td;
}

/**
 * The trust domain a daemon's setting names (bare or spiffe://), refused naming the setting (`--trust-domain`,
 * `trust_domain in FILE`) so the operator knows which value to change.
 */
export function configuredTrustDomain(value: string, setting: string): string {
  try {
    return parseIssuingTrustDomain(parseTrustDomain(value));
  } catch (err) {
    if (err instanceof MeshidError && err.code === 'invalid_argument') throw invalidArgument(`${setting}: ${err.message}`, err);
    throw err;
  }
}

/** Accepts a trust domain as "example.org" or "spiffe://example.org" and returns the bare name. */
export function parseTrustDomain(input: string): string {
  if (input.startsWith(SCHEME)) {
    const id = parseSpiffeId(input);
    if (id.path !== '') throw invalidArgument(`"${input}" is a SPIFFE ID with a path, not a trust domain`);
    return id.trustDomain;
  }
  if (input.includes('://')) throw invalidArgument(`trust domain "${input}" must use the spiffe scheme or be a bare name`);
  return parseTrustDomainName(input);
}

/**
 * Parses a SPIFFE ID exactly as SPIFFE-ID §2 says: scheme "spiffe" (lowercase), a valid trust domain, an optional path
 * of non-empty segments that are not "." or "..", no trailing slash, no query, fragment, port, userinfo or
 * percent-encoding, at most 2048 bytes. Throws MeshidError(invalid_argument) naming what is wrong.
 */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input === 'string' && input.length <= MAX_ID_BYTES && VALID_ID_RE.test(input)) {
    const slash = input.indexOf('/', SCHEME.length);
    return slash === -1 ? { trustDomain: input.slice(SCHEME.length), path: '', id: input } : { trustDomain: input.slice(SCHEME.length, slash), path: input.slice(slash), id: input };
  }
  return parseSpiffeIdStepByStep(input);
}

/** parseSpiffeId's rules one at a time, each refusal saying what is wrong; exported for the test holding VALID_ID_RE to it. */
export function parseSpiffeIdStepByStep(input: string): SpiffeId {
  if (typeof input !== 'string' || input === '') throw invalidArgument('SPIFFE ID is empty');
  if (Buffer.byteLength(input) > MAX_ID_BYTES) throw invalidArgument('SPIFFE ID is longer than 2048 bytes');
  if (!input.startsWith(SCHEME)) {
    if (input.toLowerCase().startsWith(SCHEME)) throw invalidArgument(`SPIFFE ID "${input}" must use the lowercase scheme "spiffe://"`);
    throw invalidArgument(`"${input}" is not a SPIFFE ID: it must start with "spiffe://"`);
  }
  const rest = input.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (td === '') throw invalidArgument(`SPIFFE ID "${input}" has an empty trust domain`);
  if (/[?#]/.test(input)) throw invalidArgument(`SPIFFE ID "${input}" must not contain a query or fragment`);
  if (td.startsWith('[')) throw invalidArgument(`SPIFFE ID "${input}": IPv6 literals are not valid trust domains`);
  if (/[@:]/.test(td)) throw invalidArgument(`SPIFFE ID "${input}" must not contain userinfo or a port`);
  if (td !== td.toLowerCase()) throw invalidArgument(`SPIFFE ID "${input}": the trust domain must be lowercase`);
  try {
    parseTrustDomainName(td);
  } catch (err) {
    throw invalidArgument(`SPIFFE ID "${input}": ${(err as Error).message}`);
  }
  if (path !== '') {
    if (path.endsWith('/')) throw invalidArgument(`SPIFFE ID "${input}" must not end with "/"`);
    for (const segment of path.slice(1).split('/')) {
      if (segment === '') throw invalidArgument(`SPIFFE ID "${input}" has an empty path segment`);
      if (segment === '.' || segment === '..') throw invalidArgument(`SPIFFE ID "${input}" has a "${segment}" path segment`);
      if (!SEGMENT_RE.test(segment)) {
        throw invalidArgument(
          `SPIFFE ID "${input}": path segment "${segment}" may only hold letters, digits, ".", "-" and "_" (no percent-encoding)`,
        );
      }
    }
  }
  return { trustDomain: td, path, id: input };
}

/** A workload or agent identity: a SPIFFE ID with a non-root path (X509-SVID §3.1) in the given trust domain. */
export function parseWorkloadId(input: string, trustDomain: string, what = 'SPIFFE ID'): SpiffeId {
  let id: SpiffeId;
  try {
    id = parseSpiffeId(input);
  } catch (err) {
    // Name the field: an entry carries two IDs, and "SPIFFE ID is empty" does not say which.
    if (what === 'SPIFFE ID' || !(err instanceof MeshidError)) throw err;
    throw invalidArgument(`${what}: ${err.message}`, err);
  }
  if (id.path === '') throw invalidArgument(`${what} "${input}" must have a path: spiffe://${id.trustDomain} names the trust domain, not a workload`);
  if (id.trustDomain !== trustDomain) throw invalidArgument(`${what} "${input}" is not in trust domain "${trustDomain}"`);
  return id;
}

export function trustDomainId(trustDomain: string): string {
  return `${SCHEME}${trustDomain}`;
}
