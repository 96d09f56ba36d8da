/**
 * A seeded, randomized model of the certificate authority's lifecycle: one in-process meshid-server with two
 * datacenters (east, west) and one in-process agent in each, all on one FakeClock, short TTLs so that minutes to
 * hours of simulated time cross SVID, intermediate, JWT key and root rotations. Three workload identities with
 * different TTLs (east: A 1 h and B 3 h; west: C 2 h), each agent with an open Workload API X.509 stream, a JWT
 * bundles stream and SDS StreamSecrets streams ACKing like Envoy ([identity, ROOTCA] each).
 *
 * A seeded random sequence of operations runs on that: advance the clock (minutes to half a day, in small moves so
 * that every rotation instant is passed with the system running; ten minutes at most per move), `ca rotate-root`, `ca taint` of a random
 * authority (root, intermediate of either datacenter, JWT key), `ca revoke` of a tainted root or JWT key (with or
 * without --force), server outages of random length, agent restarts on the same data dir, an agent down across CA
 * changes (the revoke guard must name it; after a forced revoke it attests again with a new join token) and entry TTL changes,
 * all through the admin API. Seeds with `ca activate` enabled (ACTIVATE_SEEDS, or MESHID_CA_MODEL_ACTIVATE=1) also
 * activate the prepared root (preparing one first when there is none), send a wrong ID (unknown, an intermediate, a
 * JWT key, an old, tainted or revoked root: refused with NOT_FOUND / INVALID_ARGUMENT / FAILED_PRECONDITION naming it)
 * or the active root's ID (answered already_active, nothing changed), also while an agent is down; these choices come
 * from a second random stream, so the other seeds' sequences are what they were before activate existed.
 *
 * After each step, once the agents have had the chance to act (bounded real-time waits, and a minute of simulated
 * time at most, one second at a time, for their retries), the invariants hold at the simulated instant:
 *
 * - every stream's latest SVID is valid now and chains (verifyChain; `openssl verify -x509_strict -attime` at a
 *   sample of steps) to a root of the bundle that came with it; while the server is up it is not past its renewal time
 *   (zero jitter: half-life);
 * - the workloads of the two agents verify each other's SVIDs with the bundles they hold (both halves of mTLS);
 * - nothing served chains to a tainted authority (README: connected agents move off a taint within seconds) and a
 *   tainted JWT key is in no JWT bundle the streams last sent (it leaves the bundle at once);
 * - a revoked root is in no bundle and nothing served chains to it;
 * - a fresh JWT-SVID validates through ValidateJWTSVID on both agents and against the JWT bundle each stream last sent;
 * - admin refusals are FAILED_PRECONDITION / INVALID_ARGUMENT / NOT_FOUND with a message, never INTERNAL or UNKNOWN;
 *   a revoke without --force is not refused while every agent is synced and off the root.
 *
 * Model choices worth knowing when it fails: the clock moves ten minutes at a time at most; outages stay under the
 * 2 h an agent SVID has left (longer ones need new join tokens by design); an X.509 stream whose default identity had
 * no valid SVID for 30 s ends UNAVAILABLE (identity-stream.ts) and the model reconnects it like a client; an agent down
 * across a root taint may be stranded once the server SVID left the tainted root (at 90 % of its life, or at once when
 * no root it knew can sign; at its half-life when it was on an old root, not the tainted one), and one down across
 * `ca activate` of a root it never saw once the server SVID renews under it; it is then given a new join token and the
 * current bundle, as README says.
 *
 * The seed and the operation log are printed on failure. MESHID_CA_MODEL_SEED=<n> replays one seed,
 * MESHID_CA_MODEL_SEEDS=<n> runs n seeds from it, MESHID_CA_MODEL_STEPS=<n> sets the steps per seed, MESHID_CA_MODEL_LOG=1
 * prints the operation log as it goes, MESHID_CA_MODEL_ACTIVATE=1 adds `ca activate` to the replayed seeds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { isMeshidError, type MeshidError } from '../../src/common/errors.js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { connectWorkloadApi, type WorkloadApiClient, type WorkloadWatch } from '../../src/agent/cli/workload-client.js';
import type { JwtBundlesResponse, X509SvidResponse } from '../../src/agent/workload/messages.js';
import { FakeClock } from '../../src/common/clock.js';
import { validateJwtSvid } from '../../src/common/jwt/jwt-svid.js';
import { jwkToPublicKey } from '../../src/common/jwt/jwk.js';
import { renewalTime } from '../../src/common/rotation.js';
import { parseCertificate, type ParsedCertificate } from '../../src/common/x509/certificate.js';
import { verifyChain } from '../../src/common/x509/chain-verification.js';
import { pemToDerList, splitConcatenatedDer } from '../../src/common/x509/pem.js';
import type { CaManager } from '../../src/server/ca/ca-manager.js';
import { Cluster, TRUST_DOMAIN, startInProcessCluster } from '../support/cluster.js';
import { EnvoySidecar } from '../support/envoy-sidecar.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { startInProcessServer, stopInProcessServer, type InProcessCluster } from '../support/in-process-restart.js';
import { opensslVerify } from '../support/openssl.js';
import { seededRandom } from '../support/seeded-random.js';
import { connectSds, decodeSecrets, envoyNode } from '../support/sds-client.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const uid = process.getuid!();
const A = `spiffe://${TRUST_DOMAIN}/model/a`;
const B = `spiffe://${TRUST_DOMAIN}/model/b`;
const C = `spiffe://${TRUST_DOMAIN}/model/c`;
const WEST_ALIAS = `spiffe://${TRUST_DOMAIN}/node/west`;
/** The longest single move of the clock. */
const STEP_MS = 10 * MINUTE;
const AUDIENCE = 'spiffe://example.org/model/audience';

/** Short lifetimes, so that hours of simulated time cross every kind of rotation. */
const SERVER_CONFIG = {
  datacenters: ['west'],
  default_x509_svid_ttl: '2h',
  max_x509_svid_ttl: '4h',
  agent_svid_ttl: '4h',
  intermediate_ttl: '12h',
  root_ttl: '10d',
  root_activation_delay: '3h',
  jwt_key_ttl: '6h',
  default_jwt_svid_ttl: '5m',
};

interface Served {
  chain: Buffer[];
  bundle: Buffer[];
  leaf: ParsedCertificate;
}

/** One agent and the streams its workloads hold open. */
class AgentUnderTest {
  agent!: MeshidAgent;
  client!: WorkloadApiClient;
  sds!: grpc.Client;
  x509Watch!: WorkloadWatch<X509SvidResponse>;
  jwtWatch!: WorkloadWatch<JwtBundlesResponse>;
  sidecars: EnvoySidecar[] = [];
  served = new Map<string, Served>();
  jwtKeys: Map<string, KeyObject> | undefined;
  readonly faults: string[] = [];
  /**
   * Whether the X.509 stream ended UNAVAILABLE because the default identity had no valid SVID for 30 s (expired while
   * the server was down, or not yet renewed after it came back; identity-stream.ts: it ends as one that never had an
   * SVID, so the client reconnects). The model reconnects while the server is up (unsettled).
   */
  x509Ended = false;
  /** Stopped by the model across CA changes (offlineAcrossCaChanges). */
  down = false;
  /** Its agent SVID's SPIFFE ID, as of its last start or stop (a re-attestation with a new token changes it). */
  agentId = '';
  /** A forced revoke of a root ran while it was down: it may need a new join token (README). */
  mayBeCutOff = false;
  /**
   * When a root was first tainted while it was down, if one was, the instant from which it may be stranded: the server
   * SVID stays on the tainted root until 90 % of its life (README), then moves to the replacement, and an agent that
   * never stored the replacement cannot authenticate the server any more.
   */
  strandableFrom: number | undefined;
  /** The roots of the bundle when it stopped: all it can know of until it is back. */
  rootsAtStop = new Set<string>();
  private closing = false;

  constructor(
    readonly name: string,
    readonly ids: readonly string[],
    readonly socketPath: string,
    readonly dataDir: string,
  ) {}

  async start(cluster: Cluster, clock: FakeClock, joinToken?: string): Promise<void> {
    this.agent = await cluster.startInProcessAgent(
      { ...(joinToken !== undefined ? { join_token: joinToken } : {}), socket_path: this.socketPath, data_dir: this.dataDir },
      { clock, random: () => 0.5 },
    );
    this.agentId = this.agent.status().agentId ?? '';
  }

  /** Opens the streams (once the agent has something to serve: before, they would be refused). */
  open(): void {
    this.closing = false;
    this.served = new Map();
    this.jwtKeys = undefined;
    this.client = connectWorkloadApi(this.socketPath, { ownConnection: true });
    this.openX509();
    this.jwtWatch = this.client.watchJwtBundles();
    void this.pump(this.jwtWatch, (m) => this.receiveJwt(m), 'JWT bundles');
    this.sds = connectSds(this.socketPath);
    this.sidecars = this.ids.map((id) => {
      const sidecar: EnvoySidecar = new EnvoySidecar(this.sds, [id, 'ROOTCA'], envoyNode(`envoy-${id.split('/').at(-1)}`, { cluster: 'ca-model' }), (u) => {
        // A response leaving the SVID out withdraws it (docs/envoy.md): as a client taking SotW as the full state.
        if (!decodeSecrets(u.response.resources).some((x) => x.name === id) && sidecar.latest.delete(id) && u.changed.length === 0) sidecar.faults.pop();
      });
      return sidecar;
    });
  }

  openX509(): void {
    this.x509Ended = false;
    this.x509Watch = this.client.watchX509Svids();
    void this.pump(this.x509Watch, (m) => this.receiveX509(m), 'X.509');
  }

  close(): void {
    this.closing = true;
    for (const s of this.sidecars) s.close();
    this.x509Watch?.cancel();
    this.jwtWatch?.cancel();
    this.client?.close();
    this.sds?.close();
  }

  async stop(): Promise<void> {
    this.agentId = this.agent.status().agentId ?? this.agentId;
    this.close();
    await this.agent.stop();
  }

  allFaults(): string[] {
    return [...this.faults, ...this.sidecars.flatMap((s) => s.faults.map((f) => `SDS ${s.names[0]}: ${f}`))];
  }

  private async pump<T>(watch: WorkloadWatch<T>, receive: (m: T) => void, what: string): Promise<void> {
    try {
      for await (const m of watch) receive(m);
      if (!this.closing) this.faults.push(`${this.name}: the ${what} stream ended`);
    } catch (err) {
      if (what === 'X.509' && /no identity could be served/.test((err as Error).message)) {
        this.x509Ended = true;
        this.served = new Map();
      } else if (!this.closing) this.faults.push(`${this.name}: the ${what} stream failed: ${(err as Error).message}`);
    }
  }

  private receiveX509(m: X509SvidResponse): void {
    const next = new Map<string, Served>();
    for (const svid of m.svids ?? []) {
      const chain = splitConcatenatedDer(svid.x509_svid!);
      next.set(svid.spiffe_id ?? '', { chain, bundle: splitConcatenatedDer(svid.bundle!), leaf: parseCertificate(chain[0]!) });
    }
    this.served = next;
  }

  private receiveJwt(m: JwtBundlesResponse): void {
    const json = m.bundles?.[`spiffe://${TRUST_DOMAIN}`];
    if (json === undefined) {
      this.faults.push(`${this.name}: a JWT bundles message without the own trust domain`);
      return;
    }
    const keys = new Map<string, KeyObject>();
    for (const k of (JSON.parse(json.toString('utf8')) as { keys: Array<{ kid: string }> }).keys) keys.set(k.kid, jwkToPublicKey(k));
    this.jwtKeys = keys;
  }
}

const bundleKey = (roots: readonly Buffer[]): string => roots.map((r) => r.toString('base64')).sort().join(',');
const fingerprint = (der: Buffer): string => parseCertificate(der).fingerprintSha256;

class Model {
  readonly clock = new FakeClock(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  readonly t0 = this.clock.now();
  readonly log: string[] = [];
  cluster!: InProcessCluster;
  east!: AgentUnderTest;
  west!: AgentUnderTest;
  serverUp = true;
  caDecisions = 0;
  /** Fingerprints (roots, intermediates) and kids (JWT keys) the model tainted or saw tainted; roots it revoked. */
  readonly revokedRoots = new Set<string>();
  /** IDs of the roots it revoked: `ca activate` of one is refused. */
  readonly revokedRootIds: string[] = [];
  entryIds = new Map<string, string>();
  opensslChecks = 0;
  steps = 0;
  private restoreTls: (() => void) | undefined;

  constructor(
    readonly seed: number,
    readonly random: () => number,
    /** `ca activate`'s own stream: undefined leaves the seed's sequence of operations as it was before activate. */
    readonly activateRandom?: () => number,
  ) {}

  /** The agents running now (one may be down across CA changes). */
  agents(): AgentUnderTest[] {
    return [this.east, this.west].filter((a) => !a.down);
  }

  at(): string {
    return `+${((this.clock.now() - this.t0) / HOUR).toFixed(2)} h`;
  }

  note(line: string): void {
    this.log.push(`${this.at()} ${line}`);
    if (process.env['MESHID_CA_MODEL_LOG']) console.error(`seed ${this.seed} ${new Date().toISOString().slice(11, 23)} ${this.at()} ${line}`);
  }

  async setUp(): Promise<void> {
    this.restoreTls = judgeTlsOnClock(this.clock);
    this.cluster = await startInProcessCluster(this.clock, 'meshid-ca-model-', SERVER_CONFIG);
    this.watchCaDecisions(this.cluster.meshidServer.ca);
    const dir = this.cluster.dir;
    this.east = new AgentUnderTest('east', [A, B], path.join(dir, 'east.sock'), path.join(dir, 'east-data'));
    this.west = new AgentUnderTest('west', [C], path.join(dir, 'west.sock'), path.join(dir, 'west-data'));
    this.entryIds.set(A, await this.cluster.createEntry({ spiffeId: A, selectors: [`unix:uid:${uid}`], x509SvidTtl: 3600 }));
    this.entryIds.set(B, await this.cluster.createEntry({ spiffeId: B, selectors: [`unix:uid:${uid}`], x509SvidTtl: 3 * 3600 }));
    await this.cluster.createEntry({ spiffeId: WEST_ALIAS, parentId: `spiffe://${TRUST_DOMAIN}/meshid/server`, selectors: ['meshid:datacenter:west'] });
    this.entryIds.set(C, await this.cluster.createEntry({ spiffeId: C, parentId: WEST_ALIAS, selectors: [`unix:uid:${uid}`], x509SvidTtl: 2 * 3600 }));
    await this.east.start(this.cluster, this.clock, await this.cluster.token());
    const westToken = (await this.cluster.admin.call('Tokens', 'GenerateJoinToken', { datacenter: 'west' })).token!;
    await this.west.start(this.cluster, this.clock, westToken);
    for (const a of this.agents()) {
      await this.until(`${a.name}'s first sync`, () => a.agent.status().state === 'synced' && a.agent.status().svids === a.ids.length);
      a.open();
    }
    await this.settle('the first messages');
  }

  async tearDown(): Promise<void> {
    for (const a of this.east === undefined ? [] : this.agents()) a.close();
    await this.cluster?.cleanup();
    this.restoreTls?.();
  }

  /** The CA decides on its own timers and applies decisions asynchronously; the clock waits while one is applied. */
  private watchCaDecisions(ca: CaManager): void {
    const rotateNow = ca.rotateNow.bind(ca);
    ca.rotateNow = async (action) => {
      this.caDecisions++;
      try {
        return await rotateNow(action);
      } finally {
        this.caDecisions--;
      }
    };
  }

  /** Waits (real time, generous bound) for network I/O the simulated instant has started. */
  async until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!probe()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 2));
    }
    void what;
    return true;
  }

  /** The chain of the server SVID presented now (its saved copy). */
  private serverSvidChain(): Buffer[] {
    const saved = JSON.parse(fs.readFileSync(path.join(this.cluster.meshidServer.config.dataDir, 'server-svid.json'), 'utf8')) as { chain_pem: string };
    return pemToDerList(saved.chain_pem);
  }

  /**
   * Until when the server SVID presented now stays where it is: 90 % of its life on a tainted root (server-svid.ts);
   * otherwise its half-life, when it renews under the active root, which may be one an agent that is down never saw
   * (its root was old when the active one was tainted and replaced at once, or `ca activate` ran while it was down).
   */
  private serverSvidHeldUntil(): number {
    const chain = this.serverSvidChain();
    const leaf = parseCertificate(chain[0]!);
    const root = this.cluster.meshidServer.ca.bundle().x509Authorities.find((r) => this.chainsTo(chain, [r]));
    const onTaintedRoot = root !== undefined && this.tainted().certs.has(fingerprint(root));
    return leaf.notBefore + (onTaintedRoot ? 0.9 : 0.5) * (leaf.notAfter - leaf.notBefore);
  }

  /**
   * After a CA change with an agent down: a server SVID re-issued under a root that agent never saw (a taint of an
   * authority in its chain that no root it knows can replace) strands it at once.
   */
  private noteServerSvidMove(): void {
    const chain = this.serverSvidChain();
    const root = this.cluster.meshidServer.ca.bundle().x509Authorities.find((r) => this.chainsTo(chain, [r]));
    for (const x of [this.east, this.west]) {
      if (x.down && (root === undefined || !x.rootsAtStop.has(fingerprint(root)))) x.strandableFrom = Math.min(x.strandableFrom ?? Infinity, this.clock.now());
    }
  }

  private authorities(): ReturnType<CaManager['listAuthorities']> {
    return this.cluster.meshidServer.ca.listAuthorities();
  }

  /** Fingerprints of tainted roots and intermediates, and kids of tainted JWT keys, as the server lists them now. */
  tainted(): { certs: Set<string>; kids: Set<string> } {
    const certs = new Set<string>();
    const kids = new Set<string>();
    for (const a of this.authorities()) {
      if (a.state !== 'tainted') continue;
      if (a.kind === 'jwt') kids.add(a.keyId);
      else if (a.certDer !== undefined) certs.add(fingerprint(a.certDer));
    }
    return { certs, kids };
  }

  /** Why the system has not yet reached where the agents should have brought it at this instant. */
  unsettled(): string[] {
    const now = this.clock.now();
    const why: string[] = [];
    if (this.caDecisions > 0) why.push('a CA decision is being applied');
    const server = this.serverUp ? this.cluster.meshidServer.ca.bundle() : undefined;
    const tainted = this.serverUp ? this.tainted() : undefined;
    for (const a of this.agents()) {
      if (this.serverUp && a.x509Ended) a.openX509();
      const status = a.agent.status();
      if (this.serverUp && status.state !== 'synced') why.push(`${a.name} is ${status.state} (${status.lastError ?? ''})`);
      for (const id of a.ids) {
        const s = a.served.get(id);
        if (s === undefined) {
          // An SVID that expired while the server was down is withdrawn until the server signs a new one.
          if (this.serverUp) why.push(`${a.name}'s Workload API stream does not serve ${id}`);
          continue;
        }
        if (this.serverUp && renewalTime(s.leaf, 0) <= now) why.push(`${id} is past its renewal time`);
        if (s.leaf.notAfter <= now) why.push(`${a.name}'s Workload API stream still serves ${id}, expired`);
        if (server !== undefined && bundleKey(s.bundle) !== bundleKey(server.x509Authorities)) why.push(`${a.name}'s Workload API stream lags on the bundle`);
        if (tainted !== undefined) {
          for (const cert of s.chain.slice(1)) if (tainted.certs.has(fingerprint(cert))) why.push(`${id} chains to a tainted intermediate`);
          // An old intermediate under a tainted root is not tainted itself (it signs nothing more): the root tells.
          const root = s.bundle.find((r) => this.chainsTo(s.chain, [r]));
          if (root !== undefined && tainted.certs.has(fingerprint(root))) why.push(`${id} chains to a tainted root`);
        }
      }
      for (const sidecar of a.sidecars) {
        const id = sidecar.names[0]!;
        const chain = sidecar.chain(id);
        if (chain !== undefined && parseCertificate(chain[0]!).notAfter <= now) why.push(`SDS ${id} still holds an expired SVID`);
        // With the X.509 stream ended there is nothing to compare with; what SDS holds is checked on its own.
        if (a.x509Ended) continue;
        if (a.served.get(id)?.leaf.serialHex !== (chain === undefined ? undefined : parseCertificate(chain[0]!).serialHex)) why.push(`SDS ${id} lags`);
        const roots = sidecar.roots('ROOTCA');
        const streamBundle = [...a.served.values()][0]?.bundle;
        if (roots === undefined || (streamBundle !== undefined && bundleKey(roots) !== bundleKey(streamBundle))) why.push(`SDS ${id} lags on ROOTCA`);
      }
      if (server !== undefined) {
        const kids = [...(a.jwtKeys?.keys() ?? [])].sort().join(',');
        if (kids !== server.jwtAuthorities.map((k) => k.kid).sort().join(',')) why.push(`${a.name}'s JWT bundles stream lags`);
      }
      if (this.serverUp && (status.agentSvidExpiresAt ?? 0) <= now) why.push(`${a.name}'s agent SVID expired`);
      // agent_svid_ttl 4 h, renewed at half-life: while the server is up at least 2 h are left (less a step's slack).
      else if (this.serverUp && (status.agentSvidExpiresAt ?? 0) - now < 2 * HOUR - STEP_MS) why.push(`${a.name}'s agent SVID is past its renewal time`);
    }
    return why;
  }

  /**
   * Lets the agents act on this instant: real time for their pushes; then, for retries on their backoff, up to a
   * simulated minute one second at a time. Fails naming what is still off.
   */
  async settle(what: string): Promise<void> {
    await this.settleStreams(what);
    // The revoke guard also counts an agent whose own SVID is still under a tainted root, or that renewed it but has
    // not called with the new one yet: a connected agent renews on the taint and moves its stream at once, so once
    // the workload streams settle this clears in real time (seeds 304 and 387 revoked a moment sooner).
    for (let s = 0; s <= 30; s++) {
      for (let i = 0; i < 100; i++) {
        if ((await this.agentsNotMoved()).length === 0) return;
        await new Promise((r) => setTimeout(r, 10));
      }
      this.clock.advance(1000);
    }
    throw new Error(`not settled after ${what}: ${(await this.agentsNotMoved()).join('; ')}`);
  }

  /** Up agents the revoke guard would name: agent SVID under a tainted authority, or renewed and not used yet. */
  private async agentsNotMoved(): Promise<string[]> {
    if (!this.serverUp) return [];
    const authorities = this.authorities();
    const keyId = (der: Buffer | undefined, which: 'subjectKeyId' | 'authorityKeyId'): string | undefined => (der === undefined ? undefined : parseCertificate(der)[which]);
    const taintedRoots = new Set(authorities.filter((a) => a.kind === 'root' && a.state === 'tainted').map((a) => keyId(a.certDer, 'subjectKeyId')));
    const taintedSigners = new Set(
      authorities.filter((a) => a.kind === 'intermediate' && (a.state === 'tainted' || taintedRoots.has(keyId(a.certDer, 'authorityKeyId')))).map((a) => a.id),
    );
    const names: string[] = [];
    for (const a of this.agents()) {
      const record = await this.cluster.meshidServer.ds.getAgent(a.agent.status().agentId ?? '');
      if (record?.previousCertSerial !== undefined) names.push(`${a.name}'s renewed agent SVID is not used yet`);
      else if (record?.certIssuerId !== undefined && taintedSigners.has(record.certIssuerId)) names.push(`${a.name}'s agent SVID is under a tainted authority`);
    }
    return names;
  }

  private async settleStreams(what: string): Promise<void> {
    if (await this.until(what, () => this.unsettled().length === 0, 1_000)) return;
    for (let s = 0; s < 60; s++) {
      this.clock.advance(1000);
      if (await this.until(what, () => this.unsettled().length === 0, 50)) {
        this.note(`(settled after ${s + 1} simulated s)`);
        return;
      }
    }
    if (await this.until(what, () => this.unsettled().length === 0, 5_000)) return;
    const faults = this.agents().flatMap((a) => a.allFaults());
    throw new Error(`not settled after ${what}: ${this.unsettled().join('; ')}; faults: ${faults.join('; ') || 'none'}`);
  }

  private chainsTo(chain: readonly Buffer[], roots: readonly Buffer[]): boolean {
    try {
      verifyChain(chain, roots, this.clock.now(), { requireEndEntity: true });
      return true;
    } catch {
      return false;
    }
  }

  private verifies(chain: readonly Buffer[] | undefined, roots: readonly Buffer[] | undefined, what: string): void {
    assert.ok(chain !== undefined && roots !== undefined, `${what}: nothing received`);
    try {
      verifyChain(chain, roots, this.clock.now(), { requireEndEntity: true });
    } catch (err) {
      assert.fail(`${what}: ${(err as Error).message}`);
    }
  }

  private opensslVerifies(chain: readonly Buffer[], roots: readonly Buffer[], what: string, purpose?: 'sslserver' | 'sslclient'): void {
    const r = opensslVerify({ roots: [...roots], intermediates: chain.slice(1), leaf: chain[0]!, atTime: this.clock.now(), ...(purpose ? { purpose } : {}) });
    assert.ok(r.ok, `${what}: openssl verify -x509_strict -attime ${new Date(this.clock.now()).toISOString()}:\n${r.output}`);
  }

  /** The invariants at this instant (see the file's comment). */
  async check(opts: { openssl: boolean }): Promise<void> {
    const now = this.clock.now();
    for (const a of this.agents()) assert.deepEqual(a.allFaults(), [], `${a.name}'s streams; SDS responses: ${a.sidecars.map((x) => x.updates.map((u) => `${x.names[0]} v${u.response.version_info} [${u.changed.join(',')}] ${(u.response.resources ?? []).length} resources @${u.response.nonce}`).join(' | ')).join(' || ')}`);
    const tainted = this.serverUp ? this.tainted() : undefined;
    for (const a of this.agents()) {
      for (const [id, s] of a.served) {
        this.verifies(s.chain, s.bundle, `${a.name} Workload API ${id}`);
        assert.ok(s.leaf.notAfter > now, `${id} served expired`);
        if (this.serverUp) assert.ok(renewalTime(s.leaf, 0) > now, `${id} served past its renewal time (half-life) while the server is up`);
        for (const r of s.bundle) assert.ok(!this.revokedRoots.has(fingerprint(r)), `${a.name}'s bundle holds a revoked root`);
        if (tainted !== undefined) {
          for (const cert of s.chain.slice(1)) assert.ok(!tainted.certs.has(fingerprint(cert)), `${id} chains to a tainted authority`);
          const root = s.bundle.find((r) => this.chainsTo(s.chain, [r]));
          assert.ok(root !== undefined && !tainted.certs.has(fingerprint(root)), `${id} chains to a tainted root`);
        }
        if (opts.openssl) this.opensslVerifies(s.chain, s.bundle, `${a.name} Workload API ${id}`);
      }
      for (const sidecar of a.sidecars) {
        const id = sidecar.names[0]!;
        if (a.served.has(id) || (a.x509Ended && sidecar.chain(id) !== undefined)) this.verifies(sidecar.chain(id), sidecar.roots('ROOTCA'), `${a.name} SDS ${id} against its ROOTCA`);
        for (const r of sidecar.roots('ROOTCA')!) assert.ok(!this.revokedRoots.has(fingerprint(r)), `SDS ROOTCA of ${id} holds a revoked root`);
      }
      if (tainted !== undefined) for (const kid of a.jwtKeys?.keys() ?? []) assert.ok(!tainted.kids.has(kid), `${a.name}'s JWT bundle holds tainted key ${kid}`);
    }
    // mTLS across the datacenters: A (east) and C (west) check each other with the bundles their own streams hold.
    const sa = this.east.sidecars.find((s) => s.names[0] === A)!;
    const sc = this.west.sidecars[0]!;
    // Both are served unless one expired during an outage (withdrawn, checked above).
    const both = !this.east.down && !this.west.down && this.east.served.has(A) && this.west.served.has(C);
    if (both) this.verifies(sa.chain(A), sc.roots('ROOTCA'), "A's chain against C's ROOTCA");
    if (both) this.verifies(sc.chain(C), sa.roots('ROOTCA'), "C's chain against A's ROOTCA");
    if (opts.openssl && both) {
      this.opensslChecks++;
      this.opensslVerifies(sa.chain(A)!, sc.roots('ROOTCA')!, 'A as TLS server, checked by C', 'sslserver');
      this.opensslVerifies(sc.chain(C)!, sa.roots('ROOTCA')!, 'C as TLS client, checked by A', 'sslclient');
    }
    if (this.serverUp) await this.checkJwt();
  }

  /** A fresh JWT-SVID of A validates on both agents and against the JWT bundle each stream last sent. */
  private async checkJwt(): Promise<void> {
    const signer = this.east.down ? this.west : this.east;
    const subject = signer === this.east ? A : C;
    const res = await signer.client.fetchJwtSvid([AUDIENCE], subject);
    const token = res.svids[0]!.svid;
    for (const a of this.agents()) {
      const validated = await a.client.validateJwtSvid(AUDIENCE, token);
      assert.equal(validated.spiffeId, subject, `ValidateJWTSVID on ${a.name}`);
      const keys = a.jwtKeys;
      assert.ok(keys !== undefined, `${a.name}'s JWT bundles stream sent nothing`);
      try {
        validateJwtSvid(token, { audience: AUDIENCE, now: this.clock.now(), findKey: (td, kid) => (td === TRUST_DOMAIN ? keys.get(kid) : undefined) });
      } catch (err) {
        assert.fail(`a fresh JWT-SVID against ${a.name}'s JWT bundles stream: ${(err as Error).message}`);
      }
    }
  }

  // ---- operations ----

  /**
   * Moves the clock by `ms`, ten minutes at a time (a third of the shortest SVID's renewal interval), letting the
   * system settle at each: one jump past an SVID's whole life would have the agent renew it only after it expired,
   * which a running host never sees.
   */
  async advance(ms: number): Promise<void> {
    const target = this.clock.now() + ms;
    while (this.clock.now() < target) {
      this.clock.advance(Math.min(STEP_MS, target - this.clock.now()));
      await new Promise((r) => setImmediate(r));
      await this.settle(`advancing to ${this.at()}`);
      if (this.clock.now() < target) await this.check({ openssl: false });
    }
  }

  /** An admin call; a refusal is returned (AdminClient turns it into a MeshidError), after checking it is one. */
  private async admin<T>(what: string, call: () => Promise<T>): Promise<T | MeshidError> {
    try {
      const r = await call();
      this.note(`${what}: ok`);
      return r;
    } catch (err) {
      const e = err as MeshidError;
      this.note(`${what}: refused ${e.code} ${e.message}`);
      assert.ok(
        isMeshidError(e) && ['failed_precondition', 'invalid_argument', 'not_found'].includes(e.code) && e.message.length > 10,
        `${what}: refused with ${String(e.code)} "${e.message}"`,
      );
      return e;
    }
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.random() * items.length)];
  }

  async rotateRoot(): Promise<void> {
    await this.admin('ca rotate-root', () => this.cluster.admin.call('Authorities', 'RotateRoot', {}));
  }

  async taint(): Promise<void> {
    const candidates = this.authorities().filter((a) => a.state !== 'tainted');
    const a = this.pick(candidates);
    if (a === undefined) return;
    const r = await this.admin(`ca taint ${a.kind}${a.datacenter ? ` ${a.datacenter}` : ''} ${a.state} ${a.id}`, () =>
      this.cluster.admin.call('Authorities', 'TaintAuthority', { id: a.id }),
    );
    if (!(r instanceof Error) && a.kind === 'root') for (const x of [this.east, this.west]) if (x.down) x.strandableFrom ??= this.serverSvidHeldUntil();
  }

  async revoke(id?: string): Promise<void> {
    const candidates = this.authorities().filter((a) => a.state === 'tainted' && a.kind !== 'intermediate' && (id === undefined || a.id === id));
    const a = this.pick(candidates);
    if (a === undefined) return;
    const force = this.random() < 0.3;
    const offline = [this.east, this.west].find((x) => x.down);
    const agentsSynced = offline === undefined && this.agents().every((x) => x.agent.status().state === 'synced');
    const r = await this.admin(`ca revoke ${a.kind} ${a.id}${force ? ' --force' : ''}`, () =>
      this.cluster.admin.call('Authorities', 'RevokeAuthority', { id: a.id, ...(force ? { force: true } : {}) }),
    );
    if (r instanceof Error) {
      // Settled: every agent is synced and off every tainted authority, so the guard has nobody to name.
      assert.ok(!(agentsSynced && /agent/i.test(r.message)), `ca revoke refused while every agent had moved off the root: ${r.message}`);
      // The guard names whom it protects: here only the agent that is down can be meant.
      if (offline !== undefined && r.code === 'failed_precondition' && /agent/.test(r.message)) {
        assert.ok(r.message.includes(offline.agentId), `the refusal names agent ${offline.agentId}, which is down: ${r.message}`);
      }
      return;
    }
    if (offline !== undefined && a.kind === 'root' && force) offline.mayBeCutOff = true;
    if (a.kind === 'root' && a.certDer !== undefined) this.revokedRoots.add(fingerprint(a.certDer));
    if (a.kind === 'root') this.revokedRootIds.push(a.id);
  }

  async outage(ms: number): Promise<void> {
    const config = await stopInProcessServer(this.cluster);
    this.serverUp = false;
    const left = this.agents().map((a) => `${a.name}'s agent SVID ${(((a.agent.status().agentSvidExpiresAt ?? 0) - this.clock.now()) / MINUTE).toFixed(0)} min`);
    this.note(`server stopped for ${(ms / MINUTE).toFixed(0)} min (left: ${left.join(', ')})`);
    await this.advance(ms);
    this.watchCaDecisions((await startInProcessServer(this.cluster, config, this.clock)).ca);
    this.serverUp = true;
    // The agents reconnect, and retry overdue signings, on their backoff (on the FakeClock): a simulated minute at a
    // time, up to 15.
    for (let m = 0; m < 15 && this.unsettled().length > 0; m++) {
      this.clock.advance(MINUTE);
      await this.until('the agents to resync', () => this.unsettled().length === 0, 1_000);
    }
    this.note('server started again');
  }

  async restartAgent(a: AgentUnderTest): Promise<void> {
    await a.stop();
    await a.start(this.cluster, this.clock);
    this.note(`agent ${a.name} restarted`);
    const ok = await this.until(`${a.name} to serve again`, () => a.agent.status().svids >= a.ids.length, 5_000);
    assert.ok(ok, `${a.name} serves after a restart: ${JSON.stringify(a.agent.status())}`);
    a.open();
  }

  /**
   * One agent down across one to three CA changes and up to an hour (less than its agent SVID has left), then started
   * again on its data dir. A revoke meanwhile is refused naming it when it is still under the root, unless --force,
   * which cuts it off: it then attests again with a new join token, as README says to.
   */
  async offlineAcrossCaChanges(): Promise<void> {
    const a = this.pick([this.east, this.west])!;
    await a.stop();
    a.down = true;
    a.mayBeCutOff = false;
    a.strandableFrom = undefined;
    a.rootsAtStop = new Set(this.cluster.meshidServer.ca.bundle().x509Authorities.map(fingerprint));
    this.note(`agent ${a.name} stopped`);
    if (this.random() < 0.5) {
      // The case the revoke guard is for: the root the stopped agent is under, tainted and revoked.
      const root = this.authorities().find((x) => x.kind === 'root' && x.state === 'active');
      if (root !== undefined) {
        await this.admin(`ca taint root active ${root.id}`, () => this.cluster.admin.call('Authorities', 'TaintAuthority', { id: root.id }));
        a.strandableFrom ??= this.serverSvidHeldUntil();
        await this.settle(`the taint with agent ${a.name} down`);
        await this.revoke(root.id);
        this.noteServerSvidMove();
      }
    }
    const changes = Math.floor(this.random() * 3);
    for (let i = 0; i < changes; i++) {
      const r = this.random();
      if (r < 0.3) await this.rotateRoot();
      else if (r < 0.65) await this.taint();
      else await this.revoke();
      await this.settle(`CA change ${i + 1} with agent ${a.name} down`);
      this.noteServerSvidMove();
    }
    if (this.activateRandom !== undefined && this.activateRandom() < 0.4) {
      await this.activate();
      await this.settle(`ca activate with agent ${a.name} down`);
      this.noteServerSvidMove();
      // README: an agent down since before rotate-root holds only the old root, and needs the current bundle once the
      // server SVID has moved to the activated one (at its next renewal).
      const active = this.authorities().find((x) => x.kind === 'root' && x.state === 'active');
      if (active?.certDer !== undefined && !a.rootsAtStop.has(fingerprint(active.certDer))) a.strandableFrom = Math.min(a.strandableFrom ?? Infinity, this.serverSvidHeldUntil());
    }
    const away = Math.round(this.random() * HOUR);
    this.note(`advance ${(away / MINUTE).toFixed(0)} min with agent ${a.name} down`);
    await this.advance(away);
    await a.start(this.cluster, this.clock);
    a.down = false;
    this.note(`agent ${a.name} started again`);
    const usable = (): boolean => a.agent.status().state === 'synced' || a.agent.status().state === 'reattest-required';
    for (let s = 0; s < 120 && !usable(); s++) {
      this.clock.advance(1000);
      await this.until(`${a.name} to resync`, usable, 100);
    }
    const status = a.agent.status();
    if (status.state !== 'synced') {
      // Stranded (see strandedByRootReplacement): as README says, a new join token, and the current bundle to reach
      // the server with, as an operator would give it (`bundle show`).
      const serverSvidMoved = a.strandableFrom !== undefined && this.clock.now() >= a.strandableFrom;
      assert.ok(
        a.mayBeCutOff || (serverSvidMoved && /not a trusted root/.test(status.lastError ?? '')),
        `agent ${a.name} cannot resync after being down ${a.strandableFrom === undefined ? 'with no root tainted or activated unseen' : `across a root taint or activation, ${((a.strandableFrom - this.clock.now()) / MINUTE).toFixed(0)} min before the server SVID was to move (serverSvidHeldUntil)`}: ${JSON.stringify(status)}`,
      );
      this.note(`agent ${a.name} is ${status.state}: ${status.lastError}`);
      await a.agent.stop();
      await this.cluster.writeBundle();
      const token = (await this.cluster.admin.call('Tokens', 'GenerateJoinToken', { datacenter: a.name })).token!;
      await a.start(this.cluster, this.clock, token);
      this.note(`agent ${a.name} attested again with a new join token and the current bundle`);
    }
    await this.until(`${a.name} to serve`, () => a.agent.status().state === 'synced' && a.agent.status().svids === a.ids.length, 10_000);
    a.open();
  }

  async changeTtl(): Promise<void> {
    const id = this.pick([A, B, C])!;
    const ttl = this.pick([3600, 2 * 3600, 3 * 3600, 4 * 3600])!;
    await this.admin(`entry update ${id.split('/').at(-1)} --x509-svid-ttl ${ttl / 3600}h`, () =>
      this.cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: this.entryIds.get(id), x509_svid_ttl: ttl }, mask: ['x509_svid_ttl'] }),
    );
  }

  /**
   * `ca activate`, drawn from its own stream: the prepared root (made first with `ca rotate-root` when there is none),
   * a wrong ID, or the active root's ID. What activate promises is checked at once: the root is active, every
   * datacenter's active intermediate is signed by it, and the root it replaced stays in the bundle while an
   * intermediate it signed lives; the streams
   * then move on their usual renewals (the invariants after the step).
   */
  async activate(): Promise<void> {
    const random = this.activateRandom!;
    const pick = <T,>(items: readonly T[]): T | undefined => (items.length === 0 ? undefined : items[Math.floor(random() * items.length)]);
    const r = random();
    const roots = this.authorities().filter((a) => a.kind === 'root');
    if (r < 0.6) {
      if (!roots.some((a) => a.state === 'prepared')) await this.rotateRoot();
      const prepared = this.authorities().find((a) => a.kind === 'root' && a.state === 'prepared');
      if (prepared === undefined) return;
      const before = this.authorities().find((a) => a.kind === 'root' && a.state === 'active');
      const res = await this.admin(`ca activate ${prepared.id} (prepared)`, () => this.cluster.admin.call('Authorities', 'ActivateRoot', { id: prepared.id }));
      assert.ok(!(res instanceof Error), `ca activate of the prepared root ${prepared.id} refused: ${(res as Error).message}`);
      assert.equal(res.root?.id, prepared.id);
      assert.equal(res.root?.state, 'active');
      assert.equal(res.already_active ?? false, false, 'ca activate of the prepared root answered already_active');
      const now = this.authorities();
      assert.equal(now.find((a) => a.id === prepared.id)?.state, 'active', 'the activated root is the active one');
      const rootKey = parseCertificate(prepared.certDer!).subjectKeyId;
      for (const dc of ['east', 'west']) {
        const im = now.find((a) => a.kind === 'intermediate' && a.datacenter === dc && a.state === 'active');
        assert.ok(im?.certDer !== undefined && parseCertificate(im.certDer).authorityKeyId === rootKey, `after ca activate, ${dc}'s active intermediate (${im?.id}) is signed by ${prepared.id}`);
      }
      // The replaced root stays published while an intermediate it signed lives (one activated on its delay's end
      // may have signed none yet: each datacenter moves when its intermediate is next renewed).
      const beforeKey = before?.certDer === undefined ? undefined : parseCertificate(before.certDer).subjectKeyId;
      const signed = now.filter((a) => a.kind === 'intermediate' && a.certDer !== undefined && parseCertificate(a.certDer).authorityKeyId === beforeKey);
      if (before?.certDer !== undefined && signed.length > 0) {
        const bundle = this.cluster.meshidServer.ca.bundle().x509Authorities.map(fingerprint);
        assert.ok(bundle.includes(fingerprint(before.certDer)), `the root ${before.id} that ca activate replaced stays in the bundle while its intermediates (${signed.map((a) => a.id).join(', ')}) live`);
      }
      return;
    }
    if (r < 0.8) {
      const intermediate = pick(this.authorities().filter((a) => a.kind === 'intermediate'));
      const jwt = pick(this.authorities().filter((a) => a.kind === 'jwt'));
      const notPrepared = pick(roots.filter((a) => a.state !== 'prepared' && a.state !== 'active'));
      const wrong: Array<{ id: string; what: string; code: string }> = [
        { id: 'root-0000', what: 'unknown', code: 'not_found' },
        ...(intermediate ? [{ id: intermediate.id, what: `${intermediate.datacenter} intermediate`, code: 'invalid_argument' }] : []),
        ...(jwt ? [{ id: jwt.id, what: 'JWT key', code: 'invalid_argument' }] : []),
        ...(notPrepared ? [{ id: notPrepared.id, what: `${notPrepared.state} root`, code: 'failed_precondition' }] : []),
        ...this.revokedRootIds.slice(-1).map((id) => ({ id, what: 'revoked root', code: 'failed_precondition' })),
      ];
      const w = pick(wrong)!;
      const before = JSON.stringify(this.authorities().map((a) => [a.id, a.state]));
      const res = await this.admin(`ca activate ${w.id} (${w.what})`, () => this.cluster.admin.call('Authorities', 'ActivateRoot', { id: w.id }));
      assert.ok(res instanceof Error, `ca activate of the ${w.what} ${w.id} was not refused`);
      assert.equal(res.code, w.code, `ca activate of the ${w.what} ${w.id}: ${res.message}`);
      assert.ok(res.message.includes(w.id), `the refusal names ${w.id}: ${res.message}`);
      assert.equal(JSON.stringify(this.authorities().map((a) => [a.id, a.state])), before, 'a refused ca activate changed nothing');
      return;
    }
    const active = roots.find((a) => a.state === 'active');
    if (active === undefined) return;
    const before = JSON.stringify(this.authorities().map((a) => [a.id, a.state]));
    const res = await this.admin(`ca activate ${active.id} (already active)`, () => this.cluster.admin.call('Authorities', 'ActivateRoot', { id: active.id }));
    assert.ok(!(res instanceof Error), `ca activate of the active root refused: ${(res as Error).message}`);
    assert.equal(res.already_active, true, 'ca activate of the active root answers already_active');
    assert.equal(JSON.stringify(this.authorities().map((a) => [a.id, a.state])), before, 'ca activate of the active root changed nothing');
  }

  /** One random operation, then the invariants. */
  async step(): Promise<void> {
    this.steps++;
    if (this.activateRandom !== undefined && this.activateRandom() < 0.3) await this.activate();
    else await this.randomOperation();
    await this.settle(`step ${this.steps}`);
    await this.check({ openssl: this.random() < 0.2 });
  }

  private async randomOperation(): Promise<void> {
    const r = this.random();
    if (r < 0.3) {
      // Minutes to half a day, skewed short.
      const ms = Math.round(5 * MINUTE * Math.pow(12 * 12, this.random()));
      this.note(`advance ${(ms / MINUTE).toFixed(0)} min`);
      await this.advance(ms);
    } else if (r < 0.4) await this.rotateRoot();
    else if (r < 0.6) await this.taint();
    else if (r < 0.75) await this.revoke();
    // Shorter than the 2 h an agent SVID has left at least (renewed at half-life), less the agents' reconnect backoff:
    // an outage outliving it needs new join tokens (README), which is not what this model is about.
    else if (r < 0.83) await this.outage(Math.round(5 * MINUTE + this.random() * 95 * MINUTE));
    else if (r < 0.87) await this.restartAgent(this.pick(this.agents())!);
    else if (r < 0.93) await this.offlineAcrossCaChanges();
    else await this.changeTtl();
  }
}

async function runSeed(seed: number, steps: number, activate: boolean): Promise<Model> {
  const model = new Model(seed, seededRandom(seed), activate ? seededRandom(seed ^ 0x5ac7) : undefined);
  try {
    await model.setUp();
    await model.check({ openssl: true });
    for (let i = 0; i < steps; i++) await model.step();
    return model;
  } catch (err) {
    const e = err as Error;
    e.message = `seed ${seed} (MESHID_CA_MODEL_SEED=${seed} MESHID_CA_MODEL_STEPS=${steps}${activate ? ' MESHID_CA_MODEL_ACTIVATE=1' : ''}), step ${model.steps}: ${e.message}\noperation log:\n  ${model.log.join('\n  ')}`;
    throw e;
  } finally {
    await model.tearDown();
  }
}

const envSeed = process.env['MESHID_CA_MODEL_SEED'];
const seedCount = Number(process.env['MESHID_CA_MODEL_SEEDS'] ?? 1);
const stepCount = Number(process.env['MESHID_CA_MODEL_STEPS'] ?? 15);
/**
 * The suite's seeds (~25 s together): 104 taints intermediates and roots and revokes them across an outage; 102 has
 * outages outliving SVIDs, an agent down across a root taint (it comes back on the tainted root the server SVID stays
 * on) and forced revokes. Locally, seeds 5 and 9 with 40 steps found the two bugs fixed with this model (server SVID
 * leaving a tainted root at its half-life; an agent cut off by a revoke while down never re-attesting).
 */
const FIXED_SEEDS = [104, 102];
/**
 * Seeds run with `ca activate` (see the file's comment; ~20 s together): 209 activates four times, once with an agent
 * down, and sends an old root's, an intermediate's and the active root's ID; 213 activates three times and sends an
 * unknown ID, an intermediate's and an old root's.
 */
const ACTIVATE_SEEDS = [209, 213];
const seeds: Array<{ seed: number; activate: boolean }> =
  envSeed !== undefined
    ? Array.from({ length: seedCount }, (_, i) => ({ seed: Number(envSeed) + i, activate: process.env['MESHID_CA_MODEL_ACTIVATE'] === '1' }))
    : [...FIXED_SEEDS.map((seed) => ({ seed, activate: false })), ...ACTIVATE_SEEDS.map((seed) => ({ seed, activate: true }))];

for (const { seed, activate } of seeds) {
  test(`CA lifecycle model, seed ${seed}, ${stepCount} steps: rotations, taints, revokes, outages, agent restarts${activate ? ', TTL changes and ca activate (prepared, wrong and active IDs)' : ' and TTL changes'} keep every stream's SVIDs valid, renewed and verifiable across datacenters`, async (t) => {
    const model = await runSeed(seed, stepCount, activate);
    const activations = model.log.filter((l) => /ca activate \S+ \(prepared\): ok$/.test(l)).length;
    t.diagnostic(`seed ${seed}: ${model.steps} steps over ${model.at()}, ${model.opensslChecks} openssl samples; ${model.log.filter((l) => / ok$| refused /.test(l)).length} admin calls${activate ? `, ${activations} activations` : ''}`);
    assert.equal(model.steps, stepCount);
  });
}
