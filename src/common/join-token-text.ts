/** The label `meshid-server token generate` prints the token after, as spire-server's `token generate` does. */
export const JOIN_TOKEN_LABEL = 'Token:';

/** The other lines of token generate's pretty output (on stderr), which a file saved from it may hold beside the token's. */
const GENERATE_OUTPUT_LABELS: readonly string[] = ['Expires at:', 'Datacenter:'];

/** The join token in saved text, or why there is none: `empty`, or `not-one-token` for anything else. */
export type JoinTokenText = { token: string } | { problem: 'empty' | 'not-one-token' };

/**
 * The join token in text an operator saved (a join token file, `token revoke --token -`'s standard input): the token
 * alone, or the whole pretty output of `meshid-server token generate` (`Token: <value>` on stdout, its expiry and
 * datacenter lines on stderr), which is what `token generate > file 2>&1` leaves, as `> file` did before those lines
 * moved to stderr. Anything else is no token rather than a guess: sent
 * whole, the server could only refuse it as unknown, spent or revoked, which sends the operator after the wrong cause.
 * A token never holds whitespace (meshid's are hex, SPIRE's UUIDs), so text with more than one word is not one token.
 * The text is never quoted back by the callers: it may hold a live token.
 */
export function joinTokenInText(text: string): JoinTokenText {
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  if (lines.length === 0) return { problem: 'empty' };
  const labelled = lines.filter((line) => line.startsWith(JOIN_TOKEN_LABEL));
  if (labelled.length === 1 && lines.every((line) => line === labelled[0] || GENERATE_OUTPUT_LABELS.some((l) => line.startsWith(l)))) {
    const value = labelled[0]!.slice(JOIN_TOKEN_LABEL.length).trim();
    return isOneWord(value) ? { token: value } : { problem: value === '' ? 'empty' : 'not-one-token' };
  }
  return lines.length === 1 && labelled.length === 0 && isOneWord(lines[0]!) ? { token: lines[0]! } : { problem: 'not-one-token' };
}

const isOneWord = (value: string): boolean => value !== '' && !/\s/.test(value);

/** What a refusal of text holding no one token says it must hold instead, after naming where the text came from. */
export const ONE_TOKEN_EXPECTED =
  'must hold the join token alone, as `meshid-server token generate` prints it after "Token: ", or that command\'s whole output';
