import { invalidArgument } from '../../common/errors.js';

/** As SPIRE's server bounds the version its agents report. */
export const MAX_AGENT_VERSION_LENGTH = 255;

/**
 * The version an agent reports in Attest or Sync (agent_version), checked: undefined when it reports none (an agent
 * of an earlier version; an empty value must never replace the one stored). Printable ASCII only: it is printed as is
 * by `agent list` in an operator's terminal, where control characters could rewrite what is shown.
 */
export function reportedAgentVersion(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.length > MAX_AGENT_VERSION_LENGTH) {
    throw invalidArgument(`agent_version is ${value.length} characters long; at most ${MAX_AGENT_VERSION_LENGTH} are allowed`);
  }
  const bad = /[^\x20-\x7e]/.exec(value);
  if (bad !== null) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw invalidArgument(`agent_version must be printable ASCII; it holds U+${code} at index ${bad.index}`);
  }
  return value;
}
