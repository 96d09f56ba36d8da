import type { KeyObject } from 'node:crypto';
import { invalidArgument } from '../../common/errors.js';
import { toStruct } from '../../common/grpc/proto.js';
import { validateJwtSvid } from '../../common/jwt/jwt-svid.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { parseSpiffeId } from '../../common/spiffe/spiffe-id.js';
import type { ValidateJwtSvidRequest, ValidateJwtSvidResponse } from './messages.js';

/**
 * ValidateJWTSVID (WL-API §6.2.3, §6.3; SPEC-NOTES §5, §8): `audience` and `svid` are both mandatory; the token is
 * validated by validateJwtSvid with its `kid` looked up only in the bundle of its `sub`'s trust domain among
 * `bundles` — the caller's: the own trust domain's and those its entries federate with, the set FetchJWTBundles
 * gives it, so validating here and validating locally agree; no bundle means untrusted. Every failure is
 * INVALID_ARGUMENT with the reason (what SPIRE returns; the spec names no code). On success `claims` carries the
 * token's claims, with `aud` always as a list (SPIRE's form, so clients need handle one shape) and numbers as
 * doubles: every claim of a token of the own trust domain, but of a foreign trust domain's token only `sub`, `aud`,
 * `exp` and the claims the operator allowed (SPIRE's `allowed_foreign_jwt_claims`). A federated trust domain vouches
 * for its SPIFFE IDs, not for what else its tokens assert, which a relying party might otherwise take as ours.
 */
export function validateJwtSvidRequest(
  request: ValidateJwtSvidRequest,
  bundles: readonly TrustBundle[],
  now: number,
  claimsPolicy: { ownTrustDomain: string; allowedForeignClaims: ReadonlySet<string> },
): ValidateJwtSvidResponse {
  const { audience, token } = requireValidateFields(request);
  const validated = validateJwtSvid(token, { audience, now, findKey: (trustDomain, kid) => findKey(bundles, trustDomain, kid) });
  let claims: Record<string, unknown> = { ...validated.claims };
  if (parseSpiffeId(validated.spiffeId).trustDomain !== claimsPolicy.ownTrustDomain) {
    claims = Object.fromEntries(Object.entries(claims).filter(([name]) => ALWAYS_RETURNED_CLAIMS.has(name) || claimsPolicy.allowedForeignClaims.has(name)));
  }
  if (typeof claims['aud'] === 'string') claims['aud'] = [claims['aud']];
  return { spiffe_id: validated.spiffeId, claims: toStruct(claims) };
}

/** The claims a validated JWT-SVID's answer carries whatever its trust domain: what the JWT-SVID spec defines. */
const ALWAYS_RETURNED_CLAIMS: ReadonlySet<string> = new Set(['sub', 'aud', 'exp']);

/**
 * ASCII whitespace around a token: what a token read from a file or a shell variable brings (a trailing newline, a
 * CRLF). SPIRE's agent accepts CR and LF in a token (go-jose hands each part to Go's base64, which skips them), so a
 * client moving from it may send one; whitespace inside the token is left for the parser to refuse.
 */
const SURROUNDING_WHITESPACE = /^[\t\n\v\f\r ]+|[\t\n\v\f\r ]+$/g;

/** The two mandatory fields of ValidateJWTSVIDRequest; either empty is INVALID_ARGUMENT (SPEC-NOTES §8). */
export function requireValidateFields(request: ValidateJwtSvidRequest): { audience: string; token: string } {
  const audience = request.audience ?? '';
  const token = (request.svid ?? '').replace(SURROUNDING_WHITESPACE, '');
  if (audience === '') throw invalidArgument('audience must be specified');
  if (token === '') throw invalidArgument('svid must be specified');
  return { audience, token };
}

/**
 * The key `kid` in the bundle of `trustDomain`. No bundle at all is said apart from a missing key: the remedy is
 * federation (an entry of the caller's federating with that trust domain), not a key rotation to wait out.
 */
function findKey(bundles: readonly TrustBundle[], trustDomain: string, kid: string): KeyObject | undefined {
  const bundle = bundles.find((b) => b.trustDomain === trustDomain);
  if (bundle === undefined) {
    throw invalidArgument(`no bundle for trust domain ${trustDomain}: its tokens are trusted only by callers with an entry federating with it`);
  }
  return bundle.jwtAuthorities.find((k) => k.kid === kid)?.publicKey;
}
