import type { HealthProbe, HealthVerdict } from '../common/health/http-health-listener.js';
import type { ParsedCertificate } from '../common/x509/certificate.js';
import type { CaRecord } from './ca/ca-journal.js';

export interface ServerHealthSources {
  /** A cheap read of the datastore. */
  datastore: { currentRevision(): Promise<number> };
  ca: { activeIntermediate(datacenter: string): ParsedCertificate | undefined; listAuthorities(): CaRecord[] };
  datacenters: readonly string[];
  /** host:port the agent API listens on. */
  agentApi: string;
  now(): number;
}

/**
 * meshid-server's live and ready, for the health check listener.
 *
 * Live: the server answers (its event loop turns) and its datastore can be read; nothing else the server does
 * depends on less. Ready: it can do its job for every agent it is configured for: the agent API listens (the probe is
 * handed to the listener once it does: StartingServerProbe), the datastore can be read (every agent call reads it),
 * every configured datacenter has an intermediate CA valid now to sign with, and a JWT key is active. An upstream CA too close to its end to renew the intermediates, or a taint whose replacement could not be
 * made, makes it unready, naming the datacenter, before agents start failing to renew.
 */
export function serverHealthProbe(sources: ServerHealthSources): HealthProbe {
  return {
    name: 'server',
    live: async (): Promise<HealthVerdict> => {
      const problem = await datastoreProblem(sources);
      return problem === undefined ? { ok: true, details: {} } : { ok: false, details: { reason: problem } };
    },
    ready: () => readyVerdict(sources),
  };
}

async function datastoreProblem(sources: ServerHealthSources): Promise<string | undefined> {
  try {
    await sources.datastore.currentRevision();
    return undefined;
  } catch (err) {
    return `the datastore cannot be read: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function readyVerdict(sources: ServerHealthSources): Promise<HealthVerdict> {
  const now = sources.now();
  const problems: string[] = [];
  const datastore = await datastoreProblem(sources);
  if (datastore !== undefined) problems.push(datastore);
  const intermediates: Record<string, string> = {};
  for (const dc of sources.datacenters) {
    const cert = sources.ca.activeIntermediate(dc);
    if (cert === undefined || cert.notBefore > now || cert.notAfter <= now) {
      problems.push(`datacenter "${dc}" has no intermediate CA valid now to sign with (see meshid-server ca show and the server log)`);
    } else {
      intermediates[dc] = new Date(cert.notAfter).toISOString();
    }
  }
  const jwtKey = sources.ca.listAuthorities().some((a) => a.kind === 'jwt' && a.state === 'active' && a.notBefore <= now && a.notAfter > now);
  if (!jwtKey) problems.push('no JWT signing key is active (see meshid-server ca show and the server log)');
  const details = { agent_api: sources.agentApi, intermediates_expire_at: intermediates };
  if (problems.length === 0) return { ok: true, details };
  return { ok: false, details: { ...details, reason: problems.join('; ') } };
}

/**
 * What the health listener answers with while the server starts: it binds before the datastore and the CA are opened
 * (a port in use fails the start before a first start makes its CA, as the agent's fails before it spends its join
 * token), so until `serving` hands it the server's probe it answers ready 500, the server being not up yet, and live
 * 200: the process answers, and a restart would only start it over.
 */
export class StartingServerProbe implements HealthProbe {
  readonly name = 'server';
  private server: HealthProbe | undefined;

  /** The server is up: from now on the listener answers with `probe`. */
  serving(probe: HealthProbe): void {
    this.server = probe;
  }

  live(): HealthVerdict | Promise<HealthVerdict> {
    return this.server?.live() ?? { ok: true, details: { starting: true } };
  }

  ready(): HealthVerdict | Promise<HealthVerdict> {
    return this.server?.ready() ?? { ok: false, details: { starting: true, reason: 'meshid-server is starting: its datastore, CA and agent API are not up yet' } };
  }
}
