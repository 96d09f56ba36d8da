import type { KeyObject } from 'node:crypto';
import { parseJsonObject } from '../json-object.js';
import { invalidArgument } from '../errors.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import { decodeBase64Url, encodeBase64Url } from './base64url.js';
import { algForKey, isJwtSvidAlg, JWT_SVID_ALGS, jwsSign, jwsVerify } from './jws-alg.js';

/** What a JWT-SVID is signed from. Times are NumericDate seconds (RFC 7519 §2). */
export interface SignJwtSvidParams {
  privateKey: KeyObject;
  /** The `kid` of the signing key as published in the trust domain's JWT bundle. */
  kid: string;
  /** The workload's SPIFFE ID (non-root path). */
  sub: string;
  /** At least one non-empty audience; embedded as given. */
  aud: string[];
  iat: number;
  exp: number;
}

/** A compact JWS split into its parts; nothing verified yet. */
export interface ParsedJwt {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** `base64url(header) "." base64url(payload)`: the bytes the signature covers. */
  signingInput: string;
  signature: Buffer;
}

export interface ValidateJwtSvidOptions {
  /** The audience the token must carry (ValidateJWTSVIDRequest.audience). */
  audience: string;
  /** Current time in milliseconds, from the caller's Clock. */
  now: number;
  /**
   * The JWT-bundle key with this `kid` in the bundle of `trustDomain` (bare name, e.g. "example.org"), or undefined
   * when there is no such bundle or key. Only the `sub`'s trust domain is ever asked.
   */
  findKey(trustDomain: string, kid: string): KeyObject | undefined;
  /** Clock skew allowed on exp, nbf and iat; 60 s like go-jose as used by go-spiffe and SPIRE (SPEC-NOTES §5). */
  leewaySeconds?: number;
}

export interface ValidatedJwtSvid {
  /** The token's `sub`. */
  spiffeId: string;
  /** Every claim of the token, as decoded from JSON. */
  claims: Record<string, unknown>;
}

/** JWT-SVID §2: the only JOSE header parameters a JWT-SVID may carry. */
const ALLOWED_HEADERS = new Set(['alg', 'kid', 'typ']);
const DEFAULT_LEEWAY_SECONDS = 60;
/** How much of a value from the token (or the request) an error message quotes. */
const QUOTED_CHARS = 64;

/**
 * A token-supplied value for an error message, as JSON, cut to QUOTED_CHARS. The message goes back as the gRPC status
 * (a trailer) and into the agent's log: quoted whole, a header member of a few hundred KB made a trailer larger than
 * HTTP/2 sends (Node's 64 KB header block), so the caller got no status at all, only its deadline.
 */
function quoted(value: unknown): string {
  const text = JSON.stringify(value ?? null);
  if (text.length <= QUOTED_CHARS) return text;
  // Not between the two halves of a character outside the BMP: half of one is no character at all.
  const high = text.charCodeAt(QUOTED_CHARS - 1);
  const end = high >= 0xd800 && high <= 0xdbff ? QUOTED_CHARS - 1 : QUOTED_CHARS;
  return `${text.slice(0, end)}… (${text.length} characters)`;
}

function encodeJson(value: object): string {
  return encodeBase64Url(JSON.stringify(value));
}

function workloadSubject(sub: unknown, what: string): string {
  if (typeof sub !== 'string' || sub === '') throw invalidArgument(`${what} has no sub claim`);
  let id;
  try {
    id = parseSpiffeId(sub);
  } catch (err) {
    throw invalidArgument(`${what} subject is not a valid SPIFFE ID: ${(err as Error).message}`, err);
  }
  // SPEC-NOTES §2: spiffe://td names the trust domain, never a workload.
  if (id.path === '') throw invalidArgument(`${what} subject "${sub}" must have a path: a trust domain ID is not a workload identity`);
  return sub;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * Signs a JWT-SVID (SPEC-NOTES §5): JWS compact; header exactly `{alg, kid, typ: "JWT"}` with alg from the key
 * (ES256/ES384/ES512 by curve with raw R‖S signatures, RS256 for RSA ≥ 2048 bits); claims `sub`, `aud` (always an
 * array), `exp`, `iat`. Throws MeshidError invalid_argument on a bad subject, audience, kid or times.
 */
export function signJwtSvid(params: SignJwtSvidParams): string {
  const { privateKey, kid, sub, aud, iat, exp } = params;
  if (privateKey.type !== 'private') throw invalidArgument('a JWT-SVID must be signed with a private key');
  if (typeof kid !== 'string' || kid === '') throw invalidArgument('a JWT-SVID needs a kid (go-spiffe and SPIRE reject tokens without one)');
  workloadSubject(sub, 'JWT-SVID');
  if (!Array.isArray(aud) || aud.length === 0) throw invalidArgument('audience must be specified');
  if (aud.some((a) => typeof a !== 'string' || a === '')) throw invalidArgument('audience values must be non-empty strings');
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw invalidArgument('iat and exp must be integer seconds');
  if (exp <= iat) throw invalidArgument('exp must be after iat');
  const alg = algForKey(privateKey);
  const signingInput = `${encodeJson({ alg, kid, typ: 'JWT' })}.${encodeJson({ sub, aud: [...aud], exp, iat })}`;
  return `${signingInput}.${encodeBase64Url(jwsSign(alg, privateKey, signingInput))}`;
}

function decodeJsonObject(segment: string, what: string): Record<string, unknown> {
  const bytes = decodeBase64Url(segment, `token ${what}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalidArgument(`token ${what} is not valid JSON`);
  }
  return parseJsonObject(text, `token ${what}`);
}

/**
 * Splits a JWS compact serialization (JWT-SVID §1: three base64url segments, no padding) and decodes header and
 * claims. Structure only: nothing is verified. A JWE (five segments) or JWS JSON serialization is refused.
 */
export function parseJwtSvid(token: string): ParsedJwt {
  if (typeof token !== 'string' || token === '') throw invalidArgument('token is empty');
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw invalidArgument(`token is not a JWS compact serialization: expected 3 segments, found ${parts.length}`);
  }
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const header = decodeJsonObject(headerPart, 'header');
  const claims = decodeJsonObject(payloadPart, 'payload');
  // An empty signature is structurally fine (alg "none"); validation refuses it by alg and by signature.
  const signature = decodeBase64Url(signaturePart, 'token signature');
  return { header, claims, signingInput: `${headerPart}.${payloadPart}`, signature };
}

function checkHeader(header: Record<string, unknown>): { alg: (typeof JWT_SVID_ALGS)[number]; kid: string } {
  const alg = header['alg'];
  if (!isJwtSvidAlg(alg)) {
    throw invalidArgument(`token algorithm ${quoted(alg)} is not allowed (allowed: ${JWT_SVID_ALGS.join(', ')})`);
  }
  for (const name of Object.keys(header)) {
    if (!ALLOWED_HEADERS.has(name)) throw invalidArgument(`token header parameter ${quoted(name)} is not allowed (only alg, kid and typ)`);
  }
  const typ = header['typ'];
  if (typ !== undefined && typ !== 'JWT' && typ !== 'JOSE') throw invalidArgument(`token typ ${quoted(typ)} is not JWT or JOSE`);
  const kid = header['kid'];
  if (kid === undefined) throw invalidArgument('token header is missing the key id (kid)');
  if (typeof kid !== 'string' || kid === '') throw invalidArgument('token key id (kid) must be a non-empty string');
  return { alg, kid };
}

function checkTimes(claims: Record<string, unknown>, nowSeconds: number, leeway: number): void {
  const { exp, nbf, iat } = claims;
  if (exp === undefined) throw invalidArgument('token has no exp claim');
  if (!isNumericDate(exp)) throw invalidArgument('token exp claim is not a NumericDate');
  if (nowSeconds >= exp + leeway) throw invalidArgument('token has expired');
  if (nbf !== undefined) {
    if (!isNumericDate(nbf)) throw invalidArgument('token nbf claim is not a NumericDate');
    if (nowSeconds + leeway < nbf) throw invalidArgument('token is not valid yet (nbf is in the future)');
  }
  if (iat !== undefined) {
    if (!isNumericDate(iat)) throw invalidArgument('token iat claim is not a NumericDate');
    if (nowSeconds + leeway < iat) throw invalidArgument('token was issued in the future (iat)');
  }
}

function checkAudience(aud: unknown, audience: string): void {
  if (aud === undefined) throw invalidArgument('token has no aud claim');
  // RFC 7519 §4.1.3 allows a single string or an array; both are accepted (SPEC-NOTES §13).
  const list = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(list) || list.some((a) => typeof a !== 'string')) {
    throw invalidArgument('token aud claim must be a string or an array of strings');
  }
  if (!list.includes(audience)) throw invalidArgument(`token audience does not include ${quoted(audience)}`);
}

/**
 * Validates a JWT-SVID as the Workload API's ValidateJWTSVID does (SPEC-NOTES §5, §8): compact JWS; alg on the
 * allow-list; only alg/kid/typ headers, typ JWT or JOSE if present, kid required; `sub` a SPIFFE ID with a path; the
 * key found by kid only in the bundle of the sub's trust domain; signature; then exp present and not passed, nbf and
 * iat not in the future (each with leeway), and `aud` (string or array) containing `audience`. The signature is
 * checked before any claim, so an unauthenticated token only ever learns "signature is invalid".
 * Every failure is MeshidError invalid_argument naming the reason.
 */
export function validateJwtSvid(token: string, options: ValidateJwtSvidOptions): ValidatedJwtSvid {
  const { audience, now, findKey } = options;
  const leeway = options.leewaySeconds ?? DEFAULT_LEEWAY_SECONDS;
  if (typeof audience !== 'string' || audience === '') throw invalidArgument('audience must be specified');
  const parsed = parseJwtSvid(token);
  const { alg, kid } = checkHeader(parsed.header);
  const sub = workloadSubject(parsed.claims['sub'], 'token');
  const trustDomain = parseSpiffeId(sub).trustDomain;
  const key = findKey(trustDomain, kid);
  if (key === undefined) throw invalidArgument(`no key with kid ${quoted(kid)} in the bundle for ${trustDomain}`);
  if (!jwsVerify(alg, key, parsed.signingInput, parsed.signature)) throw invalidArgument('token signature is invalid');
  checkTimes(parsed.claims, now / 1000, leeway);
  checkAudience(parsed.claims['aud'], audience);
  return { spiffeId: sub, claims: parsed.claims };
}
