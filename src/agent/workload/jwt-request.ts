import { invalidArgument } from '../../common/errors.js';
import { checkAudiences } from '../../common/jwt/audience-limits.js';
import { parseSpiffeId } from '../../common/spiffe/spiffe-id.js';
import type { JwtSvidRequest } from './messages.js';

export interface JwtSvidQuery {
  readonly audience: string[];
  /** The one identity asked for, or undefined for every entitled identity. */
  readonly spiffeId: string | undefined;
}

/**
 * Validates a JWTSVIDRequest (WL-API §6.2.1; SPEC-NOTES §8), all as INVALID_ARGUMENT (non-retryable client mistakes):
 * at least one audience ("audience must be specified"); no empty-string audience (it would yield a token whose only
 * audience is empty); at most MAX_AUDIENCES of at most MAX_AUDIENCE_BYTES each; a non-empty `spiffe_id` must be a
 * well-formed SPIFFE ID. Whether the caller is entitled to that ID is decided later (PERMISSION_DENIED).
 */
export function parseJwtSvidRequest(request: JwtSvidRequest): JwtSvidQuery {
  const audience = request.audience ?? [];
  checkAudiences(audience);
  const requested = request.spiffe_id ?? '';
  if (requested === '') return { audience: [...audience], spiffeId: undefined };
  try {
    parseSpiffeId(requested);
  } catch (err) {
    throw invalidArgument(`invalid spiffe_id: ${(err as Error).message}`, err);
  }
  return { audience: [...audience], spiffeId: requested };
}
