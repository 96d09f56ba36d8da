import { looksLikeCredential } from '../../common/cli/credential-like.js';
import type { MeshidError } from '../../common/errors.js';

/** What stands for a credential-like word, as pino's redact censors a token field (common/log.ts). */
const CENSOR = '[redacted]';

/** Words as credentials are written: a join token's hex, a UUID, a JWT's dotted segments; a sentence's full stop apart. */
const WORD = /[\w-]+(?:\.[\w-]+)*/g;

/**
 * The words of a refusal's cause, for its debug line (api/handler.ts): the caller is told only what to do, and a
 * datastore refusal's reason ("conflicting with a record it holds") does not say which constraint SQLite found broken,
 * which only its own message names. A cause may quote what it could not read (a JSON parse error quotes the text), so
 * any word that looks like a join token or JWT-SVID (looksLikeCredential, as CLI errors test what they would quote) is
 * replaced. Undefined for a refusal without a cause.
 */
export function refusalDetail(err: MeshidError): string | undefined {
  const cause = err.cause;
  if (cause === undefined) return undefined;
  const text = cause instanceof Error ? cause.message : String(cause);
  return text.replace(WORD, (word) => (looksLikeCredential(word) ? CENSOR : word));
}
