import fs from 'node:fs';
import { systemClock, type Clock } from '../common/clock.js';
import { formatDuration } from '../common/duration.js';
import { failedPrecondition, unavailable, type MeshidError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Selector } from '../common/spiffe/selector.js';
import type { PeerCredentials, PeerInfo } from './attestor/peer-credentials.js';
import { UnixWorkloadAttestor } from './attestor/unix-workload-attestor.js';
import { SubordinateIds } from './attestor/subordinate-ids.js';
import { IdentityCache } from './cache/identity-cache.js';
import { SvidIssuer } from './cache/svid-issuer.js';
import { AgentIdentity, noJoinToken } from './client/agent-identity.js';
import { NodeClient } from './client/node-client.js';
import { rejectionOf } from './client/rejection.js';
import { ServerClock } from './client/server-clock.js';
import { ServerConnection, type ConnectionState } from './client/server-connection.js';
import { probeServerTrust } from './client/server-trust-probe.js';
import { readTrustBundleFile } from './client/trust-bundle-file.js';
import { resolveTrustDomain } from './resolve-trust-domain.js';
import type { AgentConfig } from './config.js';
import { WorkloadEndpoint } from './endpoints/workload-endpoint.js';
import { HttpHealthListener } from '../common/health/http-health-listener.js';
import { agentHealthProbe } from './agent-health.js';
import { AgentStore } from './storage/agent-store.js';
import { DamagedIdentity } from './storage/damaged-identity.js';
import { StateWriter } from './storage/state-writer.js';
import type { ChangedState, WithdrawnState } from './storage/state-changes.js';
import type { StoredState } from './storage/stored-state.js';
import { meshidVersion } from '../common/meshid-version.js';

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  clock?: Clock;
  /** Jitter source for rotation and backoff, [0, 1); default Math.random. */
  random?: () => number;
  /** Replaces the unix workload attestor (tests). */
  attestor?: { attest(peer: PeerInfo): Selector[] };
  /** Replaces the peer-credential addon (tests). */
  credentials?: PeerCredentials;
  /**
   * Whose per-uid budgets on the socket a uid spends (connections, calls, hashing, SDS names); default
   * SubordinateIds over the host's /etc/subuid (tests give their own files).
   */
  accountOf?: (uid: number) => number;
}

/** What the agent reports about itself (logs, health detail, tests). Times are epoch ms. */
export interface AgentStatus {
  readonly state: ConnectionState;
  /** Whether workloads are being served (state restored or first sync done). */
  readonly ready: boolean;
  readonly agentId: string | undefined;
  readonly agentSvidExpiresAt: number | undefined;
  readonly entries: number;
  readonly svids: number;
  /** NotAfter of the SVID that expires first: how long the agent can serve without the server. */
  readonly oldestSvidExpiresAt: number | undefined;
  readonly revision: number;
  readonly lastError: string | undefined;
  /** A skew between this host's clock and the server's that stops renewals (ServerClock.problem). */
  readonly clockProblem: string | undefined;
}

/**
 * meshid-agent's composition root: builds every part from the config and hands each its dependencies — the store
 * (data dir), the identity cache (the WorkloadCache the APIs read), the SVID issuer, the agent identity, the server
 * client and connection, and the workload endpoint on the Unix socket. Start-up order: restore what the data dir
 * holds (so workloads are served at once, even with the server down), open the socket, then reach the server.
 * `done` rejects when the agent cannot work at all (first attestation refused); stop() closes everything it opened.
 */
export class MeshidAgent {
  /** Rejects with the reason when the agent gives up for good; never resolves otherwise. */
  readonly done: Promise<never>;
  private fail!: (err: MeshidError) => void;
  private stopped = false;

  private constructor(
    private readonly store: AgentStore,
    private readonly cache: IdentityCache,
    private readonly issuer: SvidIssuer,
    private readonly identity: AgentIdentity,
    private readonly client: NodeClient,
    private readonly writer: StateWriter,
    private readonly serverClock: ServerClock,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.done = new Promise<never>((_resolve, reject) => (this.fail = reject));
    // Callers that only stop() the agent must not see an unhandled rejection.
    this.done.catch(() => undefined);
  }

  private connection!: ServerConnection;
  private endpoint: WorkloadEndpoint | undefined;
  private health: HttpHealthListener | undefined;

  static async start(opts: AgentOptions): Promise<MeshidAgent> {
    const { config, log } = opts;
    const clock = opts.clock ?? systemClock;
    // Built first: it refuses a /proc it cannot attest from (checkProcPidNamespace) before a join token is spent.
    // One reading of /etc/subuid for the socket's budgets and the attestor's hashing budget.
    const accountOf = opts.accountOf ?? new SubordinateIds().accountOf;
    const attestor = opts.attestor ?? new UnixWorkloadAttestor({ clock, log: log.child({ subsystem: 'attestor' }), accountOf });
    const store = AgentStore.open(config.dataDir, log.child({ subsystem: 'storage' }));
    let agent: MeshidAgent | undefined;
    try {
      // A damaged identity file is replaced by attesting again with the join token; the agent then starts as one whose
      // file is missing, serving its stored state meanwhile. Everything that could stop it is decided before the file
      // is moved (below, once the listeners are bound): an agent that cannot attest again keeps the file where the
      // operator left it.
      const found = store.loadIdentity({ damaged: 'return' });
      const damaged = found instanceof DamagedIdentity ? found : undefined;
      const stored = found instanceof DamagedIdentity ? undefined : found;
      if (damaged !== undefined && config.joinToken === undefined) throw damaged.refusal();
      // Read before loading: cutting a torn journal batch back (a crash during a save) makes the journal new again.
      const stateWrittenAt = store.stateWrittenAt();
      const state = store.loadState(clock.now());
      const fileRoots = config.trustBundlePath === undefined ? undefined : readTrustBundleFile(config.trustBundlePath);
      const trustDomain = resolveTrustDomain(config, stored, state, fileRoots);
      if (stored === undefined) {
        if (config.joinToken === undefined) {
          throw noJoinToken(config.dataDir);
        }
        if (fileRoots === undefined && state === undefined && !config.insecureBootstrap) {
          throw failedPrecondition(
            damaged === undefined
              ? 'no trust bundle to authenticate meshid-server with: pass --trust-bundle FILE (meshid-server bundle show) or --insecure-bootstrap'
              : `${damaged.file} cannot be used (${damaged.reason}), and the agent holds no other trust bundle to authenticate ` +
                  'meshid-server with when it attests again (no stored state): pass --trust-bundle FILE (meshid-server bundle show) ' +
                  'or --insecure-bootstrap. The file is left as it is',
          );
        }
      }

      const client = new NodeClient({ serverAddress: config.serverAddress, log: log.child({ subsystem: 'server-client' }) });
      let connection: ServerConnection | undefined;
      const serverClock = new ServerClock(clock, log.child({ subsystem: 'clock' }));
      const cache = new IdentityCache({
        clock,
        log: log.child({ subsystem: 'cache' }),
        jwtCacheSize: config.jwtSvidCacheSize,
        ...(opts.random !== undefined ? { random: opts.random } : {}),
        signJwtSvid: async (entryId, audience) => {
          if (connection?.state === 'banned' || connection?.state === 'reattest-required') {
            throw unavailable('the agent cannot get new JWT-SVIDs: the server no longer accepts it');
          }
          try {
            return await client.signJwtSvid(entryId, audience);
          } catch (err) {
            const kind = rejectionOf(err);
            if (kind === undefined) throw err;
            connection?.handleRejection(kind, err as MeshidError);
            // A ban is refused as it is: whatever state the connection was in, nothing is served on it.
            if (kind === 'banned') throw err;
            // A refusal of the agent's own SVID, not of the workload: as once the agent has given up (above), a token it
            // holds that is still valid is served (the JWT cache falls back on it for UNAVAILABLE).
            throw unavailable(`the agent cannot get new JWT-SVIDs now: ${(err as MeshidError).message}`, err);
          }
        },
      });
      if (state !== undefined) {
        cache.apply({ upserts: state.entries, bundle: state.bundle, federatedBundles: state.federatedBundles });
        cache.putSvids(state.svids);
        cache.markReady();
      }
      // The state's bundle is the newest; without it (lost or damaged), the operator's file and the roots kept with
      // the agent SVID are both trusted. A file written after the state was is trusted next to the state's bundle
      // too, until the server's first bundle replaces both: an agent that missed a root change (stopped before it
      // stored the new root) is brought back by passing the current bundle, without a new join token. An older file
      // (left from the install) is not: it could bring back a root the agent has since seen revoked.
      const repair = state !== undefined && config.trustBundlePath !== undefined && writtenAfter(config.trustBundlePath, stateWrittenAt);
      if (repair) log.info({ trustBundle: config.trustBundlePath }, 'the trust bundle file is newer than the stored state: its roots are trusted next to it until the server sends its bundle');
      const roots = state !== undefined ? unionOf(state.bundle.x509Authorities, repair ? fileRoots : undefined) : unionOf(fileRoots, stored?.trustRoots);
      if (stored !== undefined && (roots === undefined || roots.length === 0)) {
        throw failedPrecondition(
          `the agent has an SVID in ${config.dataDir} but no trust bundle to authenticate meshid-server with (its state is missing ` +
            'or was unreadable): pass --trust-bundle FILE (meshid-server bundle show)',
        );
      }
      if (trustDomain !== undefined && roots !== undefined) client.setTrust(trustDomain, roots);

      const issuer = new SvidIssuer({
        cache,
        sign: (items) => client.signX509Svids(items),
        onSigned: (leaf, sentAt) => serverClock.observe(leaf.notBefore, sentAt, leaf.notAfter),
        clock,
        log: log.child({ subsystem: 'svid-issuer' }),
        ...(opts.random !== undefined ? { random: opts.random } : {}),
        onRejected: (kind, err) => connection?.handleRejection(kind, err),
      });
      const identity = new AgentIdentity({
        client,
        store,
        clock,
        log: log.child({ subsystem: 'agent-svid' }),
        joinToken: config.joinToken,
        insecureBootstrap: config.insecureBootstrap,
        trustDomain,
        trustRoots: () => cache.ownBundle()?.x509Authorities ?? [],
        onRejected: (kind, err) => connection?.handleRejection(kind, err),
        serverClock,
        ...(opts.random !== undefined ? { random: opts.random } : {}),
      });
      if (stored !== undefined) {
        identity.restore(stored);
        if (config.joinToken !== undefined) log.info('a stored agent SVID is used; the join token is kept for re-attestation only');
      }
      const writer = new StateWriter({
        clock,
        log: log.child({ subsystem: 'storage' }),
        // What the cache named changed, not a comparison of the whole state: with 10,000 SVIDs that costs ~4 ms of
        // CPU on the event loop at every save, one that finds nothing included. Pending (the first snapshot being
        // written off the event loop): written again once that write has ended.
        write: () => {
          const running = agent;
          if (running === undefined || store.saveChanges((entryIds) => running.captureChanges(entryIds), () => running.capture()!)) return;
          return store.compactionSettled();
        },
      });
      agent = new MeshidAgent(store, cache, issuer, identity, client, writer, serverClock, clock, log);
      const self = agent;
      connection = new ServerConnection({
        client,
        identity,
        cache,
        issuer,
        clock,
        log: log.child({ subsystem: 'sync' }),
        bootstrapRoots: fileRoots,
        serverClock,
        revision: state?.revision ?? 0,
        onFatal: (err) => self.fatal(err),
        checkBootstrapTrust: async (bootstrapRoots) => {
          const problem = await probeServerTrust(bootstrapRoots, { serverAddress: config.serverAddress, trustDomain });
          if (problem === undefined) return undefined;
          return failedPrecondition(
            `meshid-server at ${config.serverAddress} presents ${problem.presented}, which the trust bundle given with --trust-bundle ` +
              `(${config.trustBundlePath ?? 'trust_bundle_path'}) does not authenticate: ${problem.reason}. Pass the bundle of the server's trust ` +
              'domain (meshid-server bundle show), or check --server-address',
          );
        },
        onRevision: () => writer.markDirty(),
        // Only the withdrawal, not a comparison of the whole state: a burst of single deletes is a save per delete.
        onWithdrawn: (entryIds) =>
          writer.saveNow(() => {
            const part = self.captureWithdrawal(entryIds);
            if (part === undefined || store.saveWithdrawal(part, () => self.capture()!)) return;
            return store.compactionSettled();
          }),
        ...(opts.random !== undefined ? { random: opts.random } : {}),
      });
      agent.connection = connection;
      cache.onChange((entryIds) => {
        store.noteChanged(entryIds);
        writer.markDirty();
      });

      agent.endpoint = await WorkloadEndpoint.start({
        socketPath: config.socketPath,
        cache,
        attestor,
        log,
        clock,
        sds: config.sds,
        workload: {
          allowedForeignJwtClaims: config.allowedForeignJwtClaims,
          allowUnauthenticatedVerifiers: config.allowUnauthenticatedVerifiers,
        },
        maxConnectionsPerUid: config.maxConnectionsPerUid,
        maxCallsPerUid: config.maxCallsPerUid,
        accountOf,
        apis: { workload: config.servesWorkloadApi, sds: config.servesSds },
        healthDetail: () => self.healthDetail(),
        // A banned agent withdrew everything and never serves again: SPIRE's agent exits then, and no probe may take
        // an agent left with nothing for one that serves.
        serving: () => cache.ready() && connection?.state !== 'banned' && !self.stopped,
        ...(opts.credentials !== undefined ? { credentials: opts.credentials } : {}),
      });
      if (config.healthChecks !== undefined) {
        // Before the server is reached: a port in use stops the start before a join token is spent.
        agent.health = await HttpHealthListener.start(
          config.healthChecks,
          agentHealthProbe({ socketPath: config.socketPath, socketIno: fs.statSync(config.socketPath).ino, status: () => self.status(), now: () => clock.now() }),
          log.child({ subsystem: 'health' }),
        );
      }
      // Only now, with the socket and the health port bound: a socket or port in use stops the start with the file
      // still in place, where the operator left it. Nothing before this reads or writes the identity file (the join
      // token is spent from connection.start() on), and serving the stored state does not depend on it.
      if (damaged !== undefined) store.setIdentityAside(damaged);
      issuer.reconcile();
      connection.start();
      const status = agent.status();
      log.info(
        {
          version: meshidVersion(),
          ...(trustDomain !== undefined && { trustDomain }),
          socket: config.socketPath,
          ...(!(config.servesWorkloadApi && config.servesSds) && { serves: config.servesWorkloadApi ? 'Workload API only' : 'SDS only' }),
          server: config.serverAddress,
          dataDir: config.dataDir,
          agent: status.agentId,
          restoredEntries: state?.entries.length ?? 0,
          restoredSvids: state?.svids.length ?? 0,
          ...(agent.health !== undefined && { healthChecks: agent.health.address }),
        },
        'meshid-agent is running',
      );
      return agent;
    } catch (err) {
      if (agent !== undefined) await agent.stop().catch(() => undefined);
      else store.close();
      throw err;
    }
  }

  status(): AgentStatus {
    const current = this.identity.current();
    return {
      state: this.connection.state,
      ready: this.cache.ready(),
      agentId: current?.spiffeId,
      agentSvidExpiresAt: this.identity.notAfter(),
      entries: this.cache.entryCount,
      svids: this.cache.svidCount,
      oldestSvidExpiresAt: this.cache.oldestSvidExpiry(),
      revision: this.connection.revision,
      lastError: this.connection.lastErrorMessage,
      clockProblem: this.serverClock.problem(),
    };
  }

  /** host:port of the health check listener (useful with bind_port 0); undefined when it is off. */
  healthAddress(): string | undefined {
    return this.health?.address;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // First: a probe during the stop is refused rather than told a half-closed agent is ready, and gRPC health
    // watchers hear NOT_SERVING while workloads are still served.
    this.endpoint?.stopServing();
    await this.health?.close();
    this.connection?.stop();
    this.issuer.stop();
    this.identity.stop();
    const attesting = this.identity.attestationInFlight();
    if (attesting !== undefined) {
      // Its answer spends the join token: the identity it brings is saved while the data dir is still this agent's.
      this.log.info('waiting for the answer to the attestation under way, which spends the join token, to save the identity it brings');
      await attesting;
    }
    await this.endpoint?.close();
    this.writer.stop();
    this.cache.close();
    this.client.close();
    this.store.close();
    this.log.info('meshid-agent stopped');
  }

  private fatal(err: MeshidError): void {
    this.log.error({ reason: err.message }, 'meshid-agent cannot work: giving up');
    this.fail(err);
  }

  private capture(): StoredState | undefined {
    const bundle = this.cache.ownBundle();
    if (bundle === undefined) return undefined;
    return {
      trustDomain: bundle.trustDomain,
      revision: this.connection?.revision ?? 0,
      bundle,
      federatedBundles: this.cache.federatedBundles(),
      entries: this.cache.entries(),
      svids: this.cache.allSvids(),
    };
  }

  /** What the cache holds for `entryIds` now, the bundles and the revision (StatePersister.saveChanged). */
  private captureChanges(entryIds: readonly string[]): ChangedState | undefined {
    const part = this.captureWithdrawal(entryIds);
    return part && { ...part, revision: this.connection?.revision ?? 0 };
  }

  /** What a withdrawal of `entryIds` left of them, and the bundles (StatePersister.saveWithdrawal). */
  private captureWithdrawal(entryIds: readonly string[]): WithdrawnState | undefined {
    const bundle = this.cache.ownBundle();
    if (bundle === undefined) return undefined;
    const entries = new Map(entryIds.map((id) => [id, { entry: this.cache.entry(id), svid: this.cache.svid(id) }]));
    return { bundle, federatedBundles: this.cache.federatedBundles(), entries };
  }

  private healthDetail(): Record<string, string> {
    const s = this.status();
    const detail: Record<string, string> = { 'agent-state': s.state, entries: String(s.entries), svids: String(s.svids) };
    if (s.oldestSvidExpiresAt !== undefined) {
      const left = s.oldestSvidExpiresAt - this.clock.now();
      detail['oldest-svid-expires-in'] = left > 0 ? formatDuration(left) : 'expired';
      detail['oldest-svid-expires-in-seconds'] = String(Math.max(0, Math.floor(left / 1000)));
    }
    return detail;
  }
}

/** Whether `file` was last written after `time` (ms since the epoch). */
function writtenAfter(file: string, time: number | undefined): boolean {
  const mtime = fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs;
  return mtime !== undefined && time !== undefined && mtime > time;
}

/** Both lists of roots, each certificate once; undefined when neither is given. */
function unionOf(a: readonly Buffer[] | undefined, b: readonly Buffer[] | undefined): readonly Buffer[] | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return [...a, ...b.filter((r) => !a.some((x) => x.equals(r)))];
}
