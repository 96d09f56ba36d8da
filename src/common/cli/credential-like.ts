/**
 * Whether a value an operator typed where it does not belong looks like a credential: a join token (meshid's 40 hex
 * digits, SPIRE's UUIDs) or a JWT-SVID. Error messages then say what is wrong without repeating it, since stderr ends
 * up in terminals' scrollback and CI logs. Narrow on purpose: a mistyped name or path is still quoted back.
 */
export function looksLikeCredential(value: string): boolean {
  // Trimmed as join_token is: a token read by $(cat …) from a CRLF file keeps its CR, and is still the token.
  const v = value.trim();
  return /^[0-9a-f]{32,}$/i.test(v) || /^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i.test(v) || /^eyJ[\w-]*\.[\w-]+\.[\w-]*$/.test(v);
}

/**
 * A value as an error message quotes it: `"value"`, or in place of a value that looks like a credential a note saying
 * it is not repeated (looksLikeCredential).
 */
export function quotedUnlessCredential(value: string): string {
  return looksLikeCredential(value) ? '(a token or JWT-SVID, not repeated here: give it to the flag that takes it)' : `"${value}"`;
}
