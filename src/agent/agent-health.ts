import fs from 'node:fs';
import type { HealthProbe, HealthVerdict } from '../common/health/http-health-listener.js';
import type { ConnectionState } from './client/server-connection.js';
import { NEW_JOIN_TOKEN } from './join-token-ways.js';

/** What the probe reads of the agent (MeshidAgent.status()'s fields it needs). */
export interface AgentHealthStatus {
  readonly state: ConnectionState;
  /** Whether workloads are being served (state restored or first sync done). */
  readonly ready: boolean;
  readonly agentSvidExpiresAt: number | undefined;
  readonly entries: number;
  readonly svids: number;
  readonly lastError: string | undefined;
  /** A skew between this host's clock and the server's that stops renewals, worded for the operator. */
  readonly clockProblem?: string | undefined;
}

export interface AgentHealthSources {
  /** The workload socket, and its inode as the endpoint bound it. */
  readonly socketPath: string;
  readonly socketIno: number;
  status(): AgentHealthStatus;
  now(): number;
}

/**
 * meshid-agent's live and ready, for the health check listener.
 *
 * Live: the agent answers (its event loop turns) and its workload socket is still the file it listens on. A removed
 * or replaced socket file leaves workloads nothing to connect to while the agent runs on, and a restart makes it
 * again: that is what a liveness probe is for. Nothing about meshid-server counts: during a server outage the agent
 * serves its cache, and restarting it then would only drop what it serves from memory and retry the same server.
 *
 * Ready: workloads can get their SVIDs from it and it can keep them renewed: it holds state to serve (restored from
 * the data dir or synced), an agent SVID valid now, the server has neither banned it nor asked it to re-attest, and
 * no skew between the clocks keeps it from renewing (its SVID refused as expired by the server's clock while this
 * host's takes it for valid, or every SVID the server signs expired by this host's clock).
 * A server that cannot be reached does not make it unready while its agent SVID lasts and it holds an SVID to serve
 * (it serves from cache and reconnects by itself); once every cached SVID has expired, it has nothing left to serve. Not ready before the first attestation and sync, nor once it needs an operator (a ban, a
 * new join token).
 */
export function agentHealthProbe(sources: AgentHealthSources): HealthProbe {
  return {
    name: 'agent',
    live: () => socketVerdict(sources.socketPath, sources.socketIno),
    ready: () => readyVerdict(sources.status(), sources.now()),
  };
}

function socketVerdict(socketPath: string, ino: number): HealthVerdict {
  const details = { workload_socket: socketPath };
  const stat = fs.lstatSync(socketPath, { throwIfNoEntry: false });
  if (stat === undefined) {
    return { ok: false, details: { ...details, reason: `the workload socket ${socketPath} is gone (removed by another process): workloads cannot connect until the agent restarts and makes it again` } };
  }
  if (!stat.isSocket() || stat.ino !== ino) {
    return { ok: false, details: { ...details, reason: `${socketPath} is no longer the socket this agent listens on (another file took its place): workloads reach no agent there until it restarts` } };
  }
  return { ok: true, details };
}

function readyVerdict(s: AgentHealthStatus, now: number): HealthVerdict {
  const details: Record<string, unknown> = { state: s.state, entries: s.entries, svids: s.svids };
  if (s.agentSvidExpiresAt !== undefined) details['agent_svid_expires_at'] = new Date(s.agentSvidExpiresAt).toISOString();
  const reason = notReadyReason(s, now);
  if (reason === undefined) return { ok: true, details };
  return { ok: false, details: { ...details, reason, ...(s.lastError !== undefined ? { last_error: s.lastError } : {}) } };
}

function notReadyReason(s: AgentHealthStatus, now: number): string | undefined {
  if (s.state === 'banned') return `meshid-server banned this agent: it serves nothing; attest the host again by restarting the agent with ${NEW_JOIN_TOKEN}`;
  if (s.state === 'reattest-required') {
    // Reached by the server's refusal or by the agent SVID's expiry (noticed here, the server perhaps down); last_error
    // says which.
    return `the agent SVID has expired or meshid-server refuses it, and the agent has no unused join token to attest again with: restart it with ${NEW_JOIN_TOKEN}; it serves its cached SVIDs until they expire (see last_error)`;
  }
  if (!s.ready) return 'the agent has no SVIDs to serve yet: it has not attested and synced with meshid-server (see state and last_error)';
  if (s.agentSvidExpiresAt === undefined || s.agentSvidExpiresAt <= now) {
    // Holding a join token it has not used, the agent attests again by itself: a new token would only be wasted, and
    // should the attestation be refused the state becomes reattest-required, which says so.
    if (s.state === 'attesting') {
      // No SVID at all: state restored from a data dir whose agent SVID was lost; nothing expired.
      const what = s.agentSvidExpiresAt === undefined ? 'the agent holds no agent SVID (its data dir had none) and is attesting' : 'the agent SVID has expired and the agent is attesting again';
      return `${what} with its configured join token: it is ready once meshid-server has attested it (see last_error)`;
    }
    return `the agent SVID has expired: meshid-server no longer accepts this agent; restart it with ${NEW_JOIN_TOKEN}`;
  }
  // Expired SVIDs leave the cache, so a long outage ends with entries and nothing to serve for them. Not while synced:
  // then the SVIDs of entries just received are being signed.
  if (s.entries > 0 && s.svids === 0 && s.state !== 'synced') {
    return 'every SVID the agent held has expired and meshid-server could not be reached to renew them: workloads get none until it is back (see state and last_error)';
  }
  // The agent SVID refused as expired by the server's clock, or every SVID signed expired by this one: nothing is
  // renewed until the clocks agree, and what is served runs out.
  return s.clockProblem;
}
