/**
 * A meshid deployment for integration tests on temp dirs: a real meshid-server process (or an in-process
 * MeshidServer when a test needs to drive its clock), join tokens and entries through the admin API client, and
 * meshid-agent processes (or in-process MeshidAgents) on temporary Unix sockets. Everything started here is stopped
 * by `cleanup()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import path from 'node:path';
import { MeshidAgent } from '../../src/agent/agent.js';
import { connectWorkloadApi, type WorkloadApiClient } from '../../src/agent/cli/workload-client.js';
import { compileAgentConfig, type RawAgentConfig } from '../../src/agent/config.js';
import type { Clock } from '../../src/common/clock.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { createLogger, silentLogger, type Logger } from '../../src/common/log.js';
import { packageRoot } from '../../src/common/paths.js';
import { parseSelector } from '../../src/common/spiffe/selector.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { compileServerConfig, type RawServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { tempDir } from './server-kit.js';
import { SERVER_MAIN } from './server-process.js';
import { exitedAndRead, outputRead } from './exited-and-read.js';
import { fixedPort } from './fixed-port.js';
import { nextOutputOr } from './next-output.js';
import { serverReady } from './server-ready.js';
import { tetheredDaemon } from './tethered-daemon.js';

/** The agent executable as shipped: the bundle package.json's bin names (scripts/bundle.mjs). */
export const AGENT_MAIN = path.join(packageRoot, 'dist/bin/meshid-agent.mjs');
export const TRUST_DOMAIN = 'example.org';
export const DATACENTER = 'east';

/** What a test does with the server, whichever way it runs. */
export interface ServerHandle {
  readonly adminSocket: string;
  /** host:port of the agent API. */
  address(): string;
  stop(): Promise<void>;
  /** What a server process wrote to stdout and stderr so far; absent for an in-process server (it logs nowhere). */
  output?(): string;
  /** The server process's pid; absent for an in-process server. */
  readonly pid?: number;
}

export interface EntrySpec {
  spiffeId: string;
  selectors: string[];
  /** Default: the node alias of every agent in DATACENTER. */
  parentId?: string;
  x509SvidTtl?: number;
  hint?: string;
  /** Trust domains whose bundles workloads of this entry receive. */
  federatesWith?: string[];
}

export class Cluster {
  readonly admin: AdminClient;
  /** The own bundle's roots as PEM, written to `bundleFile` for --trust-bundle. */
  bundlePem = '';
  readonly bundleFile: string;
  private readonly agents = new Set<AgentProcess>();
  private readonly inProcessAgents = new Set<MeshidAgent>();
  private aliasCreated = false;

  constructor(
    readonly dir: string,
    public server: ServerHandle,
    private readonly removeDir: () => void,
    /** Added to the server's command line at every (re)start of a server process. */
    readonly serverArgs: readonly string[] = [],
    /** Added to the server's environment at every (re)start of a server process. */
    readonly serverEnv: NodeJS.ProcessEnv = {},
  ) {
    this.admin = new AdminClient(server.adminSocket);
    this.bundleFile = path.join(dir, 'bundle.pem');
  }

  /** The node alias every agent of DATACENTER belongs to; workload entries hang off it. */
  static readonly nodeAlias = `spiffe://${TRUST_DOMAIN}/node/${DATACENTER}`;

  async writeBundle(): Promise<void> {
    const b = await this.admin.call('Bundles', 'GetBundle', {});
    this.bundlePem = certificatesToPem(b.x509_authorities ?? []);
    fs.writeFileSync(this.bundleFile, this.bundlePem);
  }

  /** A fresh single-use join token for DATACENTER (admin API Tokens.GenerateJoinToken). */
  async token(): Promise<string> {
    const r = await this.admin.call('Tokens', 'GenerateJoinToken', { datacenter: DATACENTER });
    return r.token!;
  }

  /** Creates a workload entry (and, the first time, the datacenter's node alias); returns its ID. */
  async createEntry(spec: EntrySpec): Promise<string> {
    if (spec.parentId === undefined && !this.aliasCreated) {
      await this.create({ spiffe_id: Cluster.nodeAlias, parent_id: `spiffe://${TRUST_DOMAIN}/meshid/server`, selectors: [{ type: 'meshid', value: `datacenter:${DATACENTER}` }] });
      this.aliasCreated = true;
    }
    return this.create({
      spiffe_id: spec.spiffeId,
      parent_id: spec.parentId ?? Cluster.nodeAlias,
      selectors: spec.selectors.map(parseSelector),
      ...(spec.x509SvidTtl !== undefined ? { x509_svid_ttl: spec.x509SvidTtl } : {}),
      ...(spec.hint !== undefined ? { hint: spec.hint } : {}),
      ...(spec.federatesWith !== undefined ? { federates_with: spec.federatesWith } : {}),
    });
  }

  async deleteEntry(id: string): Promise<void> {
    const r = await this.admin.call('Entries', 'DeleteEntries', { ids: [id] });
    const code = r.results?.[0]?.status?.code ?? 0;
    if (code !== 0) throw new Error(`cannot delete entry ${id}: ${JSON.stringify(r.results)}`);
  }

  /** Starts `meshid-agent run` as a process; resolves once its socket answers health checks (unless `wait: false`). */
  async startAgent(options: AgentProcessOptions = {}): Promise<AgentProcess> {
    const name = options.name ?? 'agent';
    const dataDir = options.dataDir ?? path.join(this.dir, `${name}-data`);
    let socketPath = options.socketPath;
    if (socketPath === undefined) {
      const socketDir = path.join(this.dir, `${name}-socket`);
      fs.mkdirSync(socketDir, { recursive: true, mode: 0o755 });
      fs.chmodSync(socketDir, 0o755);
      socketPath = path.join(socketDir, 'api.sock');
    }
    const args = ['run', '--server-address', options.serverAddress ?? this.server.address(), '--socket-path', socketPath, '--data-dir', dataDir];
    if (options.trustBundle !== false) args.push('--trust-bundle', this.bundleFile);
    // '=' form: a token may start with '-' (base64url), which the flag parser would read as a flag.
    if (options.joinToken !== undefined) args.push(`--join-token=${options.joinToken}`);
    args.push(...(options.extraArgs ?? []));
    const launched = [...(options.launcher ?? []), process.execPath, ...(options.nodeArgs ?? []), AGENT_MAIN, ...args];
    const command: [string, string[]] =
      options.umask === undefined
        ? [launched[0]!, launched.slice(1)]
        : ['/bin/sh', ['-c', `umask ${options.umask}; exec "$0" "$@"`, ...launched]];
    const agent = new AgentProcess(spawn(command[0], command[1], tetheredDaemon({ ...process.env, MESHID_LOG_LEVEL: 'debug', ...options.env })), socketPath, dataDir);
    this.agents.add(agent);
    if (options.wait !== false) await agent.waitHealthy();
    return agent;
  }

  /** Starts a MeshidAgent in this process (for tests that drive its clock). */
  async startInProcessAgent(raw: RawAgentConfig, opts: { clock?: Clock; log?: Logger; random?: () => number; accountOf?: (uid: number) => number } = {}): Promise<MeshidAgent> {
    const config = compileAgentConfig({ server_address: this.server.address(), trust_bundle_path: this.bundleFile, ...raw });
    const agent = await MeshidAgent.start({
      config,
      log: opts.log ?? (process.env['MESHID_TEST_LOG'] ? createLogger({ name: 'meshid-agent', level: 'debug', pretty: false }) : silentLogger()),
      ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
      ...(opts.random !== undefined ? { random: opts.random } : {}),
      ...(opts.accountOf !== undefined ? { accountOf: opts.accountOf } : {}),
    });
    this.inProcessAgents.add(agent);
    return agent;
  }

  async cleanup(): Promise<void> {
    for (const a of this.agents) await a.stop('SIGKILL');
    for (const a of this.inProcessAgents) await a.stop();
    this.admin.close();
    await this.server.stop();
    this.removeDir();
  }

  private async create(entry: Record<string, unknown>): Promise<string> {
    const r = await this.admin.call('Entries', 'CreateEntries', { entries: [entry] });
    const result = r.results?.[0];
    if ((result?.status?.code ?? 0) !== 0 || result?.entry?.id === undefined) throw new Error(`cannot create entry: ${JSON.stringify(result?.status)}`);
    return result.entry.id;
  }
}

export interface AgentProcessOptions {
  name?: string;
  joinToken?: string;
  dataDir?: string;
  serverAddress?: string;
  /** false: start without --trust-bundle. */
  trustBundle?: boolean;
  extraArgs?: string[];
  /** false: return at once instead of waiting for the agent to be healthy. */
  wait?: boolean;
  /** Default: `<name>-socket/api.sock` in the cluster dir, created 0755. */
  socketPath?: string;
  /** Run the agent under this umask (e.g. "077"). */
  umask?: string;
  /** A command the agent's command line is appended to, e.g. ['unshare', '--pid', '--fork']. */
  launcher?: string[];
  /** Added to the agent's environment. */
  env?: NodeJS.ProcessEnv;
  /** Node flags for the agent process (before its script), e.g. ['--cpu-prof'] in a benchmark. */
  nodeArgs?: readonly string[];
}

/** A meshid-agent process, its output, and a Workload API client for its socket. */
export class AgentProcess {
  private out = '';
  private readonly exited: Promise<number | null>;

  constructor(
    readonly child: ChildProcess,
    readonly socketPath: string,
    readonly dataDir: string,
  ) {
    child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = exitedAndRead(child);
  }

  output(): string {
    return this.out;
  }

  /** A client for this agent's socket; the caller closes it. */
  client(timeoutMs = 5000): WorkloadApiClient {
    return connectWorkloadApi(this.socketPath, { timeoutMs });
  }

  /** The SPIFFE IDs of the SVIDs the agent serves this process now (one FetchX509SVID). */
  async svidIds(): Promise<string[]> {
    const client = this.client();
    try {
      return ((await client.fetchX509Svid()).svids ?? []).map((s) => s.spiffe_id!);
    } finally {
      client.close();
    }
  }

  /** The trailing metadata of a Health/Check answer (the agent puts its state and SVID horizon there). */
  async healthTrailer(): Promise<Record<string, string>> {
    const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
    const client = new Health(`unix://${this.socketPath}`, grpc.credentials.createInsecure());
    try {
      const md = await new Promise<grpc.Metadata>((resolve, reject) => {
        const call = (client as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>)['Check']!(
          { service: '' },
          (err) => err && reject(err),
        );
        call.on('status', (s: grpc.StatusObject) => resolve(s.metadata));
      });
      return Object.fromEntries(Object.entries(md.getMap()).map(([k, v]) => [k, String(v)]));
    } finally {
      client.close();
    }
  }

  /**
   * Readiness of a process is an external event: poll its health check with a generous bound, looking again whenever
   * the agent logs (it logs the steps that make it ready) rather than only every 100 ms.
   */
  async waitHealthy(): Promise<void> {
    // A bound on an agent that never gets ready, not a timing under test.
    const until = Date.now() + 30_000;
    for (;;) {
      if (this.child.exitCode !== null) {
        await outputRead(this.child);
        throw new Error(`meshid-agent exited with ${this.child.exitCode}:\n${this.out}`);
      }
      if (fs.existsSync(this.socketPath)) {
        const c = this.client(1000);
        try {
          if ((await c.health()) === 'SERVING') return;
        } catch {
          // not yet
        } finally {
          c.close();
        }
      }
      if (Date.now() > until) throw new Error(`meshid-agent did not become healthy:\n${this.out}`);
      await nextOutputOr(this.child, 100);
    }
  }

  /** Resolves when a log line matches (polling the captured output; a process event, not time logic). */
  async waitForLog(pattern: RegExp, timeoutMs = 20_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const line = this.out.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (Date.now() > until) throw new Error(`no log line matching ${pattern}:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * The exit code of an agent expected to exit by itself. Bounded: an agent that serves instead (a regression) is
   * killed and fails the test here with its output, instead of holding the file until the runner's limit.
   */
  exitCode(boundMs = 60_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`meshid-agent did not exit within ${boundMs / 1000} s (killed):\n${this.out}`));
      }, boundMs);
    });
    return Promise.race([this.exited, bound]).finally(() => clearTimeout(timer));
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/**
 * A cluster whose agent serves this test process: one entry per SPIFFE ID with the process's uid as selector,
 * created before the agent attests, so its first sync carries them. Returns the entry IDs in order.
 */
export async function startClusterWithAgent(
  prefix: string,
  spiffeIds: readonly string[],
  agentOptions: Omit<AgentProcessOptions, 'joinToken'> = {},
): Promise<{ cluster: Cluster; agent: AgentProcess; entryIds: string[] }> {
  const cluster = await startCluster(prefix);
  try {
    const entryIds: string[] = [];
    for (const spiffeId of spiffeIds) entryIds.push(await cluster.createEntry({ spiffeId, selectors: [`unix:uid:${process.getuid!()}`] }));
    const agent = await cluster.startAgent({ ...agentOptions, joinToken: await cluster.token() });
    return { cluster, agent, entryIds };
  } catch (err) {
    await cluster.cleanup();
    throw err;
  }
}

/**
 * startClusterWithAgent, returning once the agent serves this process every one of its SVIDs: healthy means synced,
 * not every SVID signed, and an SDS response carries the secrets there are, while the first X.509 message waits for
 * all of the caller's SVIDs. Tests that look at secrets start from a full cache.
 */
export async function startClusterServing(
  prefix: string,
  spiffeIds: readonly string[],
): Promise<{ cluster: Cluster; agent: AgentProcess; entryIds: string[] }> {
  const started = await startClusterWithAgent(prefix, spiffeIds);
  const workload = started.agent.client(10_000);
  try {
    const served = (await workload.fetchX509Svid()).svids.length;
    if (served !== spiffeIds.length) throw new Error(`the agent serves ${served} SVIDs, not ${spiffeIds.length}`);
  } catch (err) {
    await started.cluster.cleanup();
    throw err;
  } finally {
    workload.close();
  }
  return started;
}

/**
 * A cluster around a meshid-server process (`meshid-server run …`, dist/bin/meshid-server.mjs) with the datacenter `east`;
 * `serverArgs` are added to the server's command line, `serverEnv` to its environment. `prepare` lays out files in the
 * cluster's dir before the server starts there (data dirs an older version wrote: the server's in `server/data`, an
 * agent's in `<name>-data`).
 */
export async function startCluster(
  prefix = 'meshid-cluster-',
  serverArgs: string[] = [],
  serverEnv: NodeJS.ProcessEnv = {},
  prepare?: (dir: string) => Promise<void> | void,
): Promise<Cluster> {
  const t = tempDir(prefix);
  // Workloads of other users must reach the agent socket inside this dir.
  fs.chmodSync(t.dir, 0o755);
  let server: ServerHandle;
  try {
    await prepare?.(t.dir);
    server = await spawnServerOnFixedPort(path.join(t.dir, 'server'), serverArgs, serverEnv);
  } catch (err) {
    t.cleanup();
    throw err;
  }
  const cluster = new Cluster(t.dir, server, t.cleanup, serverArgs, serverEnv);
  await cluster.writeBundle();
  return cluster;
}

/**
 * The first start of a cluster's server process, on a fixedPort(): not port 0, so that a restart on the same port
 * (restartServerProcess, startServerProcess) cannot find it given meanwhile to another test file's listen(0) or
 * outgoing connection. Another file drawing the same port at the same time is answered with another port.
 */
async function spawnServerOnFixedPort(dir: string, extraArgs: readonly string[], env: NodeJS.ProcessEnv): Promise<ServerHandle> {
  for (let attempt = 1; ; attempt++) {
    const address = `127.0.0.1:${await fixedPort()}`;
    try {
      return await spawnServer(dir, address, extraArgs, env);
    } catch (err) {
      const taken = String(err).includes(`cannot listen on ${address} (--bind-address`) && String(err).includes('another process is listening');
      if (!taken || attempt === 3) throw err;
    }
  }
}

/** Stops the cluster's server process and starts it again on the same port, data dir and command line. */
export async function restartServerProcess(cluster: Cluster): Promise<void> {
  const address = cluster.server.address();
  await cluster.server.stop();
  await startServerProcess(cluster, address);
}

/** Starts the cluster's server process again, after `cluster.server.stop()`, on `address` (the agents' --server-address). */
export async function startServerProcess(cluster: Cluster, address: string): Promise<void> {
  cluster.server = await spawnServer(path.join(cluster.dir, 'server'), address, cluster.serverArgs, cluster.serverEnv);
}

/** `meshid-server run` in `dir`, ready once its admin socket answers health checks. */
async function spawnServer(dir: string, bindAddress: string, extraArgs: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ServerHandle> {
  const adminSocket = path.join(dir, 'admin', 'admin.sock');
  const child = spawn(
    process.execPath,
    [SERVER_MAIN, 'run', '--trust-domain', TRUST_DOMAIN, '--data-dir', path.join(dir, 'data'), '--bind-address', bindAddress, '--admin-socket', adminSocket, '--datacenter', DATACENTER, ...extraArgs],
    tetheredDaemon({ ...process.env, MESHID_LOG_LEVEL: 'info', ...env }),
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = exitedAndRead(child);
  await serverReady(child, adminSocket, () => output);
  const m = /"agentApi":"[^"]*:(\d+)"/.exec(output);
  if (!m) throw new Error(`no agent API port in the server log:\n${output}`);
  const port = Number(m[1]);
  return {
    adminSocket,
    pid: child.pid!,
    address: () => `127.0.0.1:${port}`,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A cluster around an in-process MeshidServer sharing `clock` with in-process agents; `serverConfig` is added to its
 * config (its `datacenters` serve beside DATACENTER); the server logs to `serverLog` (nowhere by default).
 */
export async function startInProcessCluster(
  clock: Clock,
  prefix = 'meshid-cluster-',
  serverConfig: RawServerConfig = {},
  serverLog: Logger = silentLogger(),
): Promise<Cluster & { meshidServer: MeshidServer }> {
  const t = tempDir(prefix);
  fs.chmodSync(t.dir, 0o755);
  const config = compileServerConfig({
    ...serverConfig,
    trust_domain: TRUST_DOMAIN,
    // DATACENTER first: token() and createEntry() without a parent use it.
    datacenters: [DATACENTER, ...(serverConfig.datacenters ?? []).filter((dc) => dc !== DATACENTER)],
    data_dir: path.join(t.dir, 'server', 'data'),
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(t.dir, 'server', 'admin', 'admin.sock'),
  });
  let server: MeshidServer;
  try {
    server = await MeshidServer.start({ config, log: serverLog, clock });
  } catch (err) {
    t.cleanup();
    throw err;
  }
  const cluster = new Cluster(t.dir, { adminSocket: config.adminSocket, address: () => `127.0.0.1:${server.agentPort}`, stop: () => server.stop() }, t.cleanup);
  await cluster.writeBundle();
  return Object.assign(cluster, { meshidServer: server });
}
