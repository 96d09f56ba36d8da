import type { Clock } from '../../common/clock.js';
import { invalidArgument } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import type { AttestedAgent } from '../datastore/datastore.js';

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

/**
 * Stores the version an agent reports as it opens Sync (every start, every reconnect), when it differs from the one
 * stored. Every Sync open of a build that reports versions carries one, so none reported means the agent now runs an
 * earlier build (rolled back): the stored version is forgotten, not shown for a build the host no longer runs.
 * Renewals carry none and are not seen here. A version refused is the stream's refusal; a write that fails is not:
 * the stream matters more than the report, which the next open repeats. A failing datastore (a full disk) is told
 * once a minute, not at each of thousands of agents' opens.
 */
export class AgentVersionRecorder {
  private readonly writeFailures: LogThrottle;

  constructor(
    private readonly deps: { ds: { setAgentVersion(spiffeId: string, version: string | undefined): Promise<void> }; clock: Clock; log: Logger },
  ) {
    this.writeFailures = new LogThrottle(deps.clock);
  }

  async record(agent: AttestedAgent, reported: string | undefined): Promise<void> {
    const version = reportedAgentVersion(reported);
    if (version === agent.agentVersion) return;
    const { ds, log } = this.deps;
    const previous = agent.agentVersion !== undefined && { previousVersion: agent.agentVersion };
    try {
      await ds.setAgentVersion(agent.spiffeId, version);
      if (version === undefined) log.info({ agent: agent.spiffeId, ...previous }, 'agent reports no version (a build older than version reporting): the one stored is forgotten');
      else log.info({ agent: agent.spiffeId, agentVersion: version, ...previous }, 'agent reports its version');
    } catch (err) {
      const admitted = this.writeFailures.admit('write');
      if (admitted !== undefined) log.warn({ err, agent: agent.spiffeId, ...admitted }, 'cannot record the version the agent reports');
    }
  }
}
