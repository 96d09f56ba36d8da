import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import type { GrpcHealthService } from '../common/grpc/health-service.js';
import { tcpListeners, type ServerConfig } from './config.js';
import { checkListenersResolved } from './listener-clash.js';
import { DATA_DIR_MARKER, openDataDir } from './data-dir.js';
import { probeAdminSocket, probeListeners } from './listen-probe.js';
import { HousekeepingSchedule } from './housekeeping-schedule.js';
import { warnOfEntriesOrphanedByPrune } from './entries/orphaned-entries.js';
import { forceShutdownGrpcServer, shutdownGrpcServer } from './grpc-shutdown.js';
import { openSqliteDatastore, type SqliteDatastore } from './datastore/sqlite-datastore.js';
import { damagedAtStart, isDamagedDatastore } from './datastore/sqlite-errors.js';
import type { Datastore } from './datastore/datastore.js';
import { unavailable } from '../common/errors.js';
import { KeyStore } from './ca/key-store.js';
import { CaManager } from './ca/ca-manager.js';
import { caSettingsFrom } from './ca/ca-settings.js';
import { loadUpstreamCa } from './ca/upstream-ca.js';
import type { CaJournalStore } from './ca/ca-journal.js';
import { ServerSvid } from './server-svid.js';
import type { BundleEndpoint } from './federation/bundle-endpoint.js';
import type { FederatedBundlePoller } from './federation/bundle-poller.js';
import { egressProxyFromEnv } from './federation/egress-proxy.js';
import { SyncHub } from './api/sync-hub.js';
import { backupService } from './api/backup-service.js';
import type { AgentApiConnections, ConnectionLimits } from './api/agent-api-connections.js';
import { HttpHealthListener } from '../common/health/http-health-listener.js';
import { serverHealthProbe, StartingServerProbe } from './server-health.js';
import { grpcHealthServing } from './grpc-health-serving.js';
import { ADMIN_SOCKET_SETTING, startAdminServer } from './admin-server.js';
import { startAgentApi } from './agent-api-server.js';
import { warnAboutAgentsOfUnservedDatacenters, warnAboutCappedEntries } from './start-warnings.js';
import { startBundleEndpoint, startFederation } from './start-federation.js';
import { removeBackupScratch } from './backup/data-dir-backup.js';
import { meshidVersion } from '../common/meshid-version.js';
import { stopServerFaultLog } from './api/handler.js';

/**
 * How long a deleted entry's tombstone stays in the change feed. Only the sync hub reads the feed, and it catches up
 * at every change; a reader further behind than this gets a full reload instead of a delta.
 */
export const ENTRY_TOMBSTONE_RETENTION_MS = 24 * 3_600_000;

export interface ServerOptions {
  config: ServerConfig;
  log: Logger;
  clock?: Clock;
  /** Tests only: bounds of the agent API's connections other than DEFAULT_CONNECTION_LIMITS, to reach them cheaply. */
  agentApiConnectionLimits?: Partial<ConnectionLimits>;
  /** Where HTTPS_PROXY and NO_PROXY are read for bundle endpoint fetches; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** A started part of a server and how to stop it; the name tells the operator what a failed undo left half-closed. */
type UndoStep = readonly [name: string, stop: () => unknown];

/**
 * Undoes a failed start's steps in the order given, going on past one that fails, so that the lock released after it
 * is not left held and the start's own error is the one reported: a step's failure is only logged, with its name.
 */
async function undoFailedStart(steps: ReadonlyArray<UndoStep>, log: Logger): Promise<void> {
  for (const [step, stop] of steps) {
    try {
      await stop();
    } catch (undoErr) {
      log.error({ err: undoErr, step }, `undoing a failed start: stopping the ${step} failed; the remaining steps go on`);
    }
  }
}

/**
 * meshid-server's composition root: builds every subsystem from the config and hands each its dependencies.
 * Startup refuses to touch an inconsistent data dir; stop() closes everything it opened.
 */
export class MeshidServer {
  private housekeepingSchedule: HousekeepingSchedule | undefined;
  private health: HttpHealthListener | undefined;
  /** grpc.health.v1 of the admin socket and the agent API, told NOT_SERVING first when the server stops. */
  private grpcHealth: GrpcHealthService[] = [];
  /** The loggers of the API listeners, whose fault throttles (handler.ts) stop with the server. */
  private apiLogs: Logger[] = [];
  private constructor(
    readonly config: ServerConfig,
    readonly ds: Datastore,
    readonly ca: CaManager,
    readonly hub: SyncHub,
    private readonly svid: ServerSvid,
    private readonly admin: grpc.Server,
    private readonly agentApi: grpc.Server,
    /** The TCP port the agent API listens on (useful with --bind-address host:0). */
    readonly agentPort: number,
    /** What the agent API's connections hold, bounded (agent-api-connections.ts). */
    readonly agentApiConnections: AgentApiConnections,
    /** The SPIFFE bundle endpoint, when configured. */
    readonly bundleEndpoint: BundleEndpoint | undefined,
    /** Refreshes federated bundles from their endpoints (config federates_with). */
    readonly federation: FederatedBundlePoller,
    /** Aborted by stop(): a backup in progress ends, rather than holding the datastore open. */
    private readonly stopping: AbortController,
    private readonly unlock: () => void,
    private readonly log: Logger,
  ) {}

  static async start(opts: ServerOptions): Promise<MeshidServer> {
    const { config, log } = opts;
    const clock = opts.clock ?? systemClock;
    // Before anything starts: a bundle endpoint on the agent API's own address would fail as "another process".
    const listeners = tcpListeners({ bind_address: config.bindAddress, bundle_endpoint_address: config.bundleEndpointAddress }, config.healthChecks);
    await checkListenersResolved(listeners);
    // A first start binds its ports and its admin socket only once it has made its CA: one taken is found before the
    // new data dir is claimed for this trust domain, so a retry may still name another (listen-probe.ts).
    if (!fs.existsSync(path.join(config.dataDir, DATA_DIR_MARKER))) {
      await probeListeners(listeners);
      await probeAdminSocket(config.adminSocket, ADMIN_SOCKET_SETTING);
    }
    // Locked before anything is read: a second server on these files would fork the CA and the change feed.
    const unlock = openDataDir(config.dataDir, config.trustDomain);
    // Next, before the datastore and the CA (a first start makes its keys): a health port in use fails the start
    // before anything is made. Not ready until the agent API listens (serving, below).
    const starting = new StartingServerProbe();
    let health: HttpHealthListener | undefined;
    let ds: SqliteDatastore;
    const datastoreFile = path.join(config.dataDir, 'datastore.sqlite3');
    try {
      // A backup a kill -9 interrupted left its datastore snapshot; with the lock held, no backup runs now.
      removeBackupScratch(config.dataDir);
      health = config.healthChecks && (await HttpHealthListener.start(config.healthChecks, starting, log.child({ subsystem: 'health' })));
      ds = await openSqliteDatastore({
        file: datastoreFile,
        clock,
        log: log.child({ subsystem: 'datastore' }),
        // The one moment a rollback stops being a matter of running the older binary again: the operator hears of it.
        onSchemaUpgrade: ({ from, to }) =>
          log.child({ subsystem: 'datastore' }).info(
            { previousSchemaVersion: from, schemaVersion: to },
            `datastore schema upgraded from version ${from} to ${to}: a meshid-server that knows only version ${from} refuses this data dir from now on; ` +
              'to go back to it, restore a backup of the data dir taken before this start',
          ),
      });
    } catch (err) {
      await undoFailedStart([['health listener', () => health?.close()]], log);
      unlock();
      throw err;
    }
    // What has started so far, stopped in reverse if a later step fails (a port in use, say).
    const started: UndoStep[] = [];
    if (health) started.push(['health listener', () => health.close()]);
    try {
      const keys = new KeyStore(config.dataDir);
      const ca = await CaManager.open(
        caSettingsFrom(config, config.upstreamCa ? loadUpstreamCa(config.upstreamCa) : undefined),
        ds as CaJournalStore,
        keys,
        clock,
        log.child({ subsystem: 'ca' }),
      );
      ca.start();
      started.push(['CA', () => ca.stop()]);
      const hub = new SyncHub(ds, config.trustDomain, log.child({ subsystem: 'sync' }), clock);
      await hub.start();
      started.push(['sync hub', () => hub.stop()]);
      warnAboutCappedEntries(hub, config, log);
      await warnAboutAgentsOfUnservedDatacenters(ds, config, clock.now(), log);
      // Any journal change may matter to agents: a new bundle, or a tainted authority to re-sign away from.
      ca.onChange(() => hub.ownBundleChanged());
      const federation = await startFederation(config, ds, ca, clock, log.child({ subsystem: 'federation' }), egressProxyFromEnv(opts.env ?? process.env));
      started.push(['federation', () => federation.stop()]);

      const svid = new ServerSvid(
        ca, config.datacenters[0]!, config.x509SvidTtlMs, clock, log.child({ subsystem: 'server-svid' }), path.join(config.dataDir, 'server-svid.json'),
      );
      svid.followTaints();
      started.push(['server SVID', () => svid.stop()]);
      const stopping = new AbortController();
      const backups = { dataDir: config.dataDir, snapshot: ds, ca, keyFile: (keyId: string) => keys.fileOf(keyId) };
      const grpcHealth = grpcHealthServing(ds, starting, log);
      // Kept: their fault throttles (handler.ts) are stopped with the server, so no summary line follows its last.
      const apiLogs = { admin: log.child({ subsystem: 'admin-api' }), backup: log.child({ subsystem: 'backup' }), agentApi: log.child({ subsystem: 'agent-api' }) };
      started.push(['API fault logs', () => Object.values(apiLogs).forEach(stopServerFaultLog)]);
      const admin = await startAdminServer(config, ds, ca, federation, backupService(backups, stopping.signal, clock, apiLogs.backup), clock, apiLogs.admin, grpcHealth, log);
      started.push(['admin API', () => forceShutdownGrpcServer(admin)]);
      const { server: agentApi, port, connections } = await startAgentApi(config, ds, ca, hub, svid, clock, apiLogs.agentApi, grpcHealth, opts.agentApiConnectionLimits);
      started.push([
        'agent API',
        () => {
          forceShutdownGrpcServer(agentApi);
          connections.stop();
        },
      ]);
      const bundleEndpoint = await startBundleEndpoint(config, ca, svid, clock, log.child({ subsystem: 'bundle-endpoint' }));
      started.push(['bundle endpoint', () => bundleEndpoint?.close()]);
      const hostOf = (address: string): string => address.replace(/:\d+$/, '');
      // Last: ready means the agent API already listens.
      starting.serving(serverHealthProbe({ datastore: ds, ca, datacenters: config.datacenters, agentApi: `${hostOf(config.bindAddress)}:${port}`, now: () => clock.now() }));
      const server = new MeshidServer(config, ds, ca, hub, svid, admin, agentApi, port, connections, bundleEndpoint, federation, stopping, unlock, log);
      server.health = health;
      server.grpcHealth = grpcHealth.services;
      server.apiLogs = Object.values(apiLogs);
      server.housekeepingSchedule = new HousekeepingSchedule(clock, () => server.housekeeping(clock), log.child({ subsystem: 'housekeeping' }));
      server.housekeepingSchedule.start();
      log.info(
        {
          version: meshidVersion(),
          trustDomain: config.trustDomain,
          datacenters: config.datacenters,
          agentApi: `${hostOf(config.bindAddress)}:${port}`,
          adminSocket: config.adminSocket,
          dataDir: config.dataDir,
          ...(bundleEndpoint && { bundleEndpoint: `${hostOf(config.bundleEndpointAddress!)}:${bundleEndpoint.port}` }),
          ...(health && { healthChecks: health.address }),
        },
        'meshid-server is running',
      );
      return server;
    } catch (err) {
      await undoFailedStart([...started.reverse(), ['datastore', () => ds.close()]], log);
      unlock();
      throw isDamagedDatastore(err) ? damagedAtStart(err, datastoreFile, config.dataDir) : err;
    }
  }

  /**
   * The periodic sweep (about once a minute, HousekeepingSchedule): expired join tokens and agents go, so do entry
   * tombstones past their retention, and CA rotation is double-checked.
   */
  async housekeeping(clock: Clock): Promise<void> {
    const now = clock.now();
    const pruned = { joinTokens: 0, agents: 0, entryTombstones: 0 };
    // Steps are independent: a failing one (a busy datastore, say) must not hold back the others until the next minute.
    const steps: [string, () => Promise<unknown>][] = [
      ['join token pruning', async () => (pruned.joinTokens = await this.ds.pruneJoinTokens(now))],
      // An agent whose SVID expired can no longer authenticate; it must attest again with a new token.
      [
        'agent pruning',
        async () => {
          const agents = await this.ds.pruneAgents(now);
          pruned.agents = agents.length;
          await warnOfEntriesOrphanedByPrune(agents, this.ds, this.log);
        },
      ],
      ['entry tombstone pruning', async () => (pruned.entryTombstones = await this.ds.pruneEntryTombstones(now - ENTRY_TOMBSTONE_RETENTION_MS))],
      ['CA rotation check', () => this.ca.recheck()],
    ];
    for (const [step, run] of steps) {
      try {
        await run();
      } catch (err) {
        this.log.error({ err, step }, 'housekeeping step failed; the others still run');
      }
    }
    if (pruned.joinTokens + pruned.agents + pruned.entryTombstones > 0) this.log.info({ pruned }, 'housekeeping removed expired records');
  }

  /** host:port of the health check listener (useful with bind_port 0); undefined when it is off. */
  healthAddress(): string | undefined {
    return this.health?.address;
  }

  async stop(): Promise<void> {
    // First: a probe during the stop is refused rather than told a server whose agent API is closing is ready.
    for (const h of this.grpcHealth) h.shutdown();
    await this.health?.close();
    const housekeepingStopped = this.housekeepingSchedule?.stop();
    this.federation.stop();
    // Before the CA's stop, which waits for its turn: a backup holds that turn until it ends.
    this.stopping.abort(unavailable('the server is stopping: the backup was not finished and nothing of it was kept; run it again once it is back'));
    const caStopped = this.ca.stop();
    this.svid.stop();
    this.hub.stop();
    const agentApiStopped = shutdownGrpcServer(this.agentApi);
    // Its listeners closed (at once, above): no handshake begins after those in progress are cut.
    this.agentApiConnections.stop();
    await Promise.all([
      // Its grace over, a connection whose peer never closed its side would hold the socket, and the process, open.
      agentApiStopped.then(() => this.agentApiConnections.cutRemaining()),
      shutdownGrpcServer(this.admin),
      this.bundleEndpoint?.close(),
    ]);
    // A housekeeping run or CA rotation in progress still uses the datastore.
    await housekeepingStopped;
    await caStopped;
    // The minute under way's repeated faults are reported now, before the last line, not a minute after it.
    this.apiLogs.forEach(stopServerFaultLog);
    fs.rmSync(this.config.adminSocket, { force: true });
    await this.ds.close();
    this.unlock();
    // The agent ends the same way: a log that stops without this line stopped otherwise (killed, crashed).
    this.log.info('meshid-server stopped');
  }
}
